# bulkops: PGXS build.
#   make && make install          build and install into the pg_config found on PATH
#   make installcheck             pg_regress suites on a temporary, preloaded instance
#   make prove_installcheck       TAP suites (test/t/*.pl)
MODULE_big = bulkops
OBJS = \
	src/bulkops.o \
	src/api.o \
	src/auth.o \
	src/claim.o \
	src/crash.o \
	src/csv.o \
	src/encode.o \
	src/encode_csv.o \
	src/enqueue.o \
	src/exec.o \
	src/http.o \
	src/json_out.o \
	src/netpolicy.o \
	src/launcher.o \
	src/oauth.o \
	src/oauth_cache.o \
	src/options.o \
	src/owner.o \
	src/privileges.o \
	src/receipts.o \
	src/ratelimit.o \
	src/results.o \
	src/retention.o \
	src/sink.o \
	src/worker.o \
	src/dialects/registry.o \
	src/dialects/clinia.o \
	src/dialects/sap_fsm.o \
	src/dialects/packagex.o \
	src/dialects/packagex_answers.o \
	src/dialects/blueconic.o \
	src/dialects/salesforce.o \
	src/dialects/salesforce_query.o \
	src/dialects/salesforce_results.o

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

REGRESS = setup targets enqueue encode worker fuzz_findings security security_attacks options_narrow upgrade sap_fsm oauth packagex blueconic salesforce bulk_query ratelimit retention
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
