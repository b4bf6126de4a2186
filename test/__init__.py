# Makes test/ a package so "python3 -m unittest test/mock/<file>.py" finds it
# here rather than in the standard library's own "test" package.
