# The mock API server and its tests (see mock_api.py).
