# Kreide — one build for the whole suite.
#
#   make            build every daemon, libcommon and the tools into $(BUILD)
#   make run        start the whole suite locally on http://127.0.0.1:8080
#   make test       install what is missing, build, run every suite
#   make bench      side-by-side benchmarks, results in bench/results/
#   make asan       the test suite built with ASan + UBSan
#   make fmt        clang-format every C file in place
#   make lint       clang-tidy + cppcheck, must be clean
#
# The build is non-recursive: one make process sees every dependency, so
# `make -jN` is safe.

BUILD   ?= build
# `make V=1` shows every command.
ifeq ($(V),1)
Q :=
else
Q := @
endif
CC      ?= gcc
SAN     ?=

# Debian's nng ships no pkg-config file; everything else is found through it.
PKGS        := libprotobuf-c libpq hiredis jansson libjwt openssl libargon2
PKG_CFLAGS  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
H2O_CFLAGS  := $(shell pkg-config --cflags libh2o-evloop 2>/dev/null) -DH2O_USE_LIBUV=0
# Only the tools speak HTTP as a client; the daemons do not link libcurl.
TOOL_PKGS   := libcurl
TOOL_CFLAGS := $(shell pkg-config --cflags $(TOOL_PKGS) 2>/dev/null)
TOOL_LIBS   := $(shell pkg-config --libs $(TOOL_PKGS) 2>/dev/null)
H2O_LIBS    := $(shell pkg-config --libs libh2o-evloop 2>/dev/null) -lwslay

ifeq ($(SAN),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT       := -O1
else
SAN_FLAGS :=
OPT       := -O2
endif

CFLAGS  ?= $(OPT) -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CPPFLAGS := -D_GNU_SOURCE -Ilibcommon -I$(BUILD)/gen $(PKG_CFLAGS)
ALL_CFLAGS = -std=gnu11 $(CFLAGS) $(WARN) $(SAN_FLAGS) -pthread -MMD -MP
LDFLAGS += $(SAN_FLAGS) -pthread
LIBS    := -lnng $(PKG_LIBS) -lm

# ---------------------------------------------------------------- protobuf
PROTOS      := $(wildcard proto/*.proto)
PROTO_C     := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
PROTO_H     := $(PROTO_C:.c=.h)
TEST_PROTOS := $(wildcard libcommon/testdata/*.proto)
TEST_PROTO_C := $(patsubst libcommon/testdata/%.proto,$(BUILD)/gen/%.pb-c.c,$(TEST_PROTOS))
TEST_PROTO_H := $(TEST_PROTO_C:.c=.h)
ALL_GEN_H   := $(PROTO_H) $(TEST_PROTO_H)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto $(PROTOS)
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC  $<"
	$(Q)protoc-c --c_out=$(BUILD)/gen -Iproto $<

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: libcommon/testdata/%.proto
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC  $<"
	$(Q)protoc-c --c_out=$(BUILD)/gen -Ilibcommon/testdata -Iproto $<

# Generated code is compiled without -Werror on unused parameters etc.
$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c | $(ALL_GEN_H)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) -std=gnu11 $(CFLAGS) $(SAN_FLAGS) -w -c -o $@ $<

PROTO_LIB := $(BUILD)/lib/libkrproto.a
$(PROTO_LIB): $(PROTO_C:.c=.o)
	@mkdir -p $(dir $@)
	$(Q)$(AR) rcs $@ $^

# --------------------------------------------------------------- libcommon
COMMON_SRC  := $(filter-out %_test.c,$(wildcard libcommon/*.c))
COMMON_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC))
COMMON_LIB  := $(BUILD)/lib/libkrcommon.a
COMMON_H2O_SRC := $(filter libcommon/%_h2o.c,$(COMMON_SRC))

$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(Q)$(AR) rcs $@ $^

# libcommon modules ending in _h2o.c adapt to h2o's event loop.
$(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_H2O_SRC)): CPPFLAGS += $(H2O_CFLAGS)

$(BUILD)/obj/%.o: %.c | $(ALL_GEN_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

# ---------------------------------------------------------------- services
SERVICES := $(patsubst services/%/,%,$(wildcard services/*/))
define service_rules
$(1)_SRC := $$(filter-out %_test.c,$$(wildcard services/$(1)/*.c))
$(1)_OBJ := $$(patsubst %.c,$(BUILD)/obj/%.o,$$($(1)_SRC))
$(BUILD)/bin/kreide-$(1): $$($(1)_OBJ) $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $(LIBS)
BINS += $(BUILD)/bin/kreide-$(1)
UNIT_TESTS += $$(patsubst services/$(1)/%_test.c,$(BUILD)/test/$(1)_%_test,$$(wildcard services/$(1)/*_test.c))
$(BUILD)/test/$(1)_%_test: $(BUILD)/obj/services/$(1)/%_test.o $$(filter-out %/main.o,$$($(1)_OBJ)) $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $(LIBS) -lcmocka
endef
$(foreach s,$(SERVICES),$(eval $(call service_rules,$(s))))

# ----------------------------------------------------------------- gateway
GW_SRC := $(filter-out %_test.c,$(wildcard gateway/*.c))
GW_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(GW_SRC))
$(GW_OBJ) $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard gateway/*_test.c)): CPPFLAGS += $(H2O_CFLAGS)
$(BUILD)/bin/kreide-gateway: $(GW_OBJ) $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(H2O_LIBS) $(LIBS)
BINS += $(BUILD)/bin/kreide-gateway
UNIT_TESTS += $(patsubst gateway/%_test.c,$(BUILD)/test/gateway_%_test,$(wildcard gateway/*_test.c))
$(BUILD)/test/gateway_%_test: $(BUILD)/obj/gateway/%_test.o $(filter-out %/main.o,$(GW_OBJ)) $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(H2O_LIBS) $(LIBS) -lcmocka

# ------------------------------------------------------------------- tools
TOOLS := $(patsubst tools/%/,%,$(wildcard tools/*/))
define tool_rules
$(1)_TSRC := $$(filter-out %_test.c,$$(wildcard tools/$(1)/*.c))
$(1)_TOBJ := $$(patsubst %.c,$(BUILD)/obj/%.o,$$($(1)_TSRC))
$$($(1)_TOBJ) $$(patsubst %.c,$(BUILD)/obj/%.o,$$(wildcard tools/$(1)/*_test.c)): CPPFLAGS += $(TOOL_CFLAGS)
$(BUILD)/bin/$(1): $$($(1)_TOBJ) $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $(TOOL_LIBS) $(LIBS)
BINS += $(BUILD)/bin/$(1)
UNIT_TESTS += $$(patsubst tools/$(1)/%_test.c,$(BUILD)/test/$(1)_%_test,$$(wildcard tools/$(1)/*_test.c))
$(BUILD)/test/$(1)_%_test: $(BUILD)/obj/tools/$(1)/%_test.o $$(filter-out %/main.o,$$($(1)_TOBJ)) $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $(TOOL_LIBS) $(LIBS) -lcmocka
endef
$(foreach t,$(TOOLS),$(eval $(call tool_rules,$(t))))

# ------------------------------------------------------ libcommon unit tests
UNIT_TESTS += $(patsubst libcommon/%_test.c,$(BUILD)/test/libcommon_%_test,$(wildcard libcommon/*_test.c))
TEST_PROTO_LIB := $(BUILD)/lib/libkrtestproto.a
$(TEST_PROTO_LIB): $(TEST_PROTO_C:.c=.o)
	@mkdir -p $(dir $@)
	$(Q)$(AR) rcs $@ $^
$(BUILD)/obj/libcommon/%_h2o_test.o: CPPFLAGS += $(H2O_CFLAGS)
$(BUILD)/test/libcommon_%_test: $(BUILD)/obj/libcommon/%_test.o $(COMMON_LIB) $(PROTO_LIB) $(TEST_PROTO_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(H2O_LIBS) $(LIBS) -lcmocka

# -------------------------------------------------------------------- fuzz
# libFuzzer drivers (clang) for every decoder of untrusted bytes.
FUZZ_SRC := $(wildcard libcommon/fuzz/*.c)
FUZZ_BINS := $(patsubst libcommon/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11
$(BUILD)/fuzz/%: libcommon/fuzz/%.c $(COMMON_SRC) $(PROTO_C) $(TEST_PROTO_C) | $(ALL_GEN_H)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)clang $(CPPFLAGS) -I$(BUILD)/gen $(FUZZ_FLAGS) -o $@ $< $(filter-out $(COMMON_H2O_SRC),$(COMMON_SRC)) \
	    $(PROTO_C) $(TEST_PROTO_C) $(LIBS)

# --------------------------------------------------------------- benchmarks
# Floors and load generators of `make bench`; built by `make` too, so their
# quick checks in tests/integration/bench_tools.test.mjs find them.
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/*.c))
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(COMMON_LIB) $(PROTO_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# ------------------------------------------------------------------ portal
# The web portal (gateway/portal, Preact + Vite) built into $(BUILD)/portal,
# which the gateway serves as KREIDE_STATIC_DIR. npm ci runs only when the
# lockfile changed (a stamp inside node_modules); node and npm come from
# scripts/bootstrap.
PORTAL_DIR   := gateway/portal
PORTAL_OUT   := $(BUILD)/portal
PORTAL_STAMP := $(PORTAL_DIR)/node_modules/.kreide-npm-ci
PORTAL_SRC   := $(PORTAL_DIR)/index.html $(PORTAL_DIR)/vite.config.js $(wildcard $(PORTAL_DIR)/src/*.* \
                $(PORTAL_DIR)/src/*/*.* $(PORTAL_DIR)/public/*.* $(PORTAL_DIR)/public/*/*.* $(PORTAL_DIR)/tools/*.*)

$(PORTAL_STAMP): $(PORTAL_DIR)/package-lock.json $(PORTAL_DIR)/package.json
	@echo "  NPM CI  $(PORTAL_DIR)"
	$(Q)cd $(PORTAL_DIR) && npm ci --no-audit --no-fund --loglevel=error </dev/null >/dev/null
	$(Q)touch $@

$(PORTAL_OUT)/index.html: $(PORTAL_SRC) $(PORTAL_STAMP)
	@echo "  VITE    $(PORTAL_OUT)"
	$(Q)cd $(PORTAL_DIR) && node node_modules/vite/bin/vite.js build --logLevel warn --outDir $(abspath $(PORTAL_OUT))

# ----------------------------------------------------------------- targets
.DEFAULT_GOAL := all
.SECONDARY:
.PHONY: all tests fuzz portal run test bench asan fmt lint clean bootstrap
all: $(BINS) $(UNIT_TESTS) $(BENCH_BINS) $(PORTAL_OUT)/index.html
tests: $(UNIT_TESTS)
fuzz: $(FUZZ_BINS)
portal: $(PORTAL_OUT)/index.html

bootstrap:
	scripts/bootstrap

run: bootstrap
	$(MAKE) all
	scripts/run

test: bootstrap
	$(MAKE) all fuzz
	BUILD=$(BUILD) scripts/test

asan: bootstrap
	$(MAKE) BUILD=build/asan SAN=1 all
	BUILD=build/asan KREIDE_SANITIZED=1 scripts/test

bench: bootstrap
	$(MAKE) all $(BENCH_BINS)
	BUILD=$(BUILD) scripts/bench

C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
fmt:
	clang-format -i $(C_FILES)

lint: all
	scripts/lint $(BUILD)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
