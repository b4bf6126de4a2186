# bulkops: PGXS build.
#   make && make install          build and install into the pg_config found on PATH
#   make installcheck             pg_regress suites on a temporary, preloaded instance
#   make prove_installcheck       TAP suites (test/t/*.pl)
MODULE_big = bulkops
# Every C file of src/ and src/dialects/: a new dialect's file builds by
# being there (test/fuzz/ and test/modules/ are outside, see FUZZ below).
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/dialects/*.c)))

EXTENSION = bulkops
DATA = bulkops--1.0.sql bulkops--1.0--1.1.sql bulkops--1.1--1.2.sql \
	bulkops--1.2--1.3.sql
PGFILEDESC = "bulkops - bulk API pushes from SQL"

SHLIB_LINK = $(shell curl-config --libs) -lcrypto
# The library's version is the extension's: default_version in bulkops.control.
BULKOPS_VERSION := $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" \
	$(dir $(lastword $(MAKEFILE_LIST)))bulkops.control)
ifeq ($(BULKOPS_VERSION),)
$(error bulkops.control has no default_version)
endif

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags) \
	-DBULKOPS_VERSION='"$(BULKOPS_VERSION)"'
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare $(BULKOPS_CFLAGS)

# pg_regress suites, all in one database: these first and in this order
# (setup makes what the others use; enqueue counts every job there is), then
# every other suite of sql/ by name, a dialect's own sql/<dialect>.sql among
# them, then retention, which deletes jobs.
REGRESS_FIRST = setup targets enqueue encode worker fuzz_findings security \
	security_attacks options_narrow upgrade oauth bulk_query ratelimit
REGRESS_LAST = retention
REGRESS = $(REGRESS_FIRST) \
	$(sort $(filter-out $(REGRESS_FIRST) $(REGRESS_LAST), \
		$(notdir $(basename $(wildcard sql/*.sql))))) \
	$(REGRESS_LAST)
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=$(srcdir)/test/regress.conf
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

# test/fuzz/run.sh builds with FUZZ=1 (clang, libFuzzer, ASan): the test-only
# harness joins; a build that gets installed never sets FUZZ.
ifdef FUZZ
OBJS += test/fuzz/fuzz_dialects.o
SHLIB_LINK += $(FUZZ_LIBS)
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The two halves of installcheck, for test/run-tests.sh.
.PHONY: installcheck-regress-only prove-only
installcheck-regress-only:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
prove-only:
	$(prove_installcheck)

# PGXS tracks no header dependencies: a changed struct must rebuild its users.
$(OBJS): $(wildcard src/*.h src/dialects/*.h)
