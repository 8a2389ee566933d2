# mqtt2kafka — plain Makefile; every library comes through pkg-config.
#
#   make            build/mqtt2kafka and the test tools
#   make test       install what is missing, build, unit + integration tests
#   make unit       cmocka unit tests          make it     integration tests
#   make san        unit tests under ASan+UBSan make lint   cppcheck + format check
#   make demo       local brokers, the bridge, a simulated fleet, records live
#   make fmt        clang-format in place      make clean
#   make deb        the .deb (ARCH=arm64|armhf) make deb-check  build, install, upgrade, purge
#   make fuzz       libFuzzer targets, FUZZ_SECONDS (60) each, clang
#   make bench      benchmarks on a private stack, < 15 min (bench-quick: < 2)
#   make dashboard-picture  the Grafana dashboard's panels from a real run (~5 min)
#
# V=1 shows the full commands; WERROR=1 (set by CI) turns warnings into errors;
# SAN=1 builds with address+undefined sanitizers into build-san/.

PKGS      := libmosquitto rdkafka libprotobuf-c sqlite3 yaml-0.1 libsystemd \
             libmicrohttpd jansson openssl
TEST_PKGS := cmocka
PYTHON    ?= /usr/bin/python3

ifeq ($(SAN),1)
B         := build-san
SANFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer
else
B         := build
SANFLAGS  :=
endif

CC        ?= cc
OPT       ?= -O2 -g
WARN      := -std=c11 -Wall -Wextra -Wshadow -Wconversion -Wstrict-prototypes \
             -Wmissing-prototypes -Wformat=2
ifeq ($(CI),true)
WERROR    ?= 1
endif
ifeq ($(WERROR),1)
WARN      += -Werror
endif
# Large files and 64-bit times on 32-bit targets (armhf) too: without them
# readdir() and stat() fail with EOVERFLOW on big inodes and offsets, and
# times stop in 2038. No library we link passes time_t, off_t or struct
# stat through its API (checked in their headers), so both are safe.
LFS       := -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64
CPPFLAGS  += -D_GNU_SOURCE $(LFS) -I. -I$(B)/proto -I$(B)/pbdesc -MMD -MP
CFLAGS    += $(OPT) $(WARN) $(SANFLAGS)
LDFLAGS   += $(SANFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

# A missing library is named with the line that installs it, not a cc error.
PKG_OK := $(shell pkg-config --exists $(PKGS) && echo yes)
ifeq ($(PKG_OK),yes)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) -lm
endif

# --- sources -------------------------------------------------------------
# PROTO_INC: where libprotobuf-dev puts descriptor.proto and the well-known
# types; bridge/pb_schema.c reads descriptor sets with descriptor.proto's
# code.
PROTO_INC  ?= /usr/include
PBDESC_C   := $(B)/pbdesc/google/protobuf/descriptor.pb-c.c
# Every schema in proto/ is embedded as one descriptor set (the built-in
# types, loaded at run time like the user's: bridge/schemas.c); the ones
# the bridge also writes or its tools use are compiled with protoc-c too
# (Sparkplug B is decoded through the set only).
PROTOS     := $(wildcard proto/*.proto)
PROTOS_C   := $(filter-out proto/sparkplug_b.proto,$(PROTOS))
BUILTIN_C  := $(B)/proto/builtin_desc.c
PROTO_C    := $(patsubst proto/%.proto,$(B)/proto/%.pb-c.c,$(PROTOS_C)) \
              $(PBDESC_C) $(BUILTIN_C)
PROTO_H    := $(patsubst %.c,%.h,$(filter %.pb-c.c,$(PROTO_C)))
PROTO_O    := $(PROTO_C:.c=.o)

SPOOL_SRC  := $(wildcard spool/*.c)
SPOOL_O    := $(patsubst %.c,%.o,$(SPOOL_SRC))
BRIDGE_SRC := $(filter-out bridge/main.c,$(wildcard bridge/*.c))
LIB_O      := $(patsubst %.c,$(B)/%.o,$(SPOOL_SRC) $(BRIDGE_SRC)) $(PROTO_O)
MAIN_O     := $(B)/bridge/main.o

UNIT_SRC   := $(wildcard test/unit/test_*.c)
UNIT_BIN   := $(patsubst test/unit/%.c,$(B)/unit/%,$(UNIT_SRC))
TOOL_SRC   := $(wildcard test/tools/*.c)
TOOL_BIN   := $(patsubst test/tools/%.c,$(B)/tools/%,$(TOOL_SRC))
BENCH_SRC  := $(wildcard test/bench/*.c)
BENCH_BIN  := $(patsubst test/bench/%.c,$(B)/bench/%,$(BENCH_SRC))

.PHONY: all deps check-deps test unit it san lint fmt clean demo fuzz deb deb-check \
        bench bench-quick dashboard-picture
all: check-deps $(B)/mqtt2kafka $(TOOL_BIN) $(BENCH_BIN)

check-deps:
ifneq ($(PKG_OK)$(wildcard $(PROTO_INC)/google/protobuf/descriptor.proto),yes$(PROTO_INC)/google/protobuf/descriptor.proto)
	@echo "mqtt2kafka: build libraries missing ($(PKGS), $(PROTO_INC)/google/protobuf/descriptor.proto)." >&2
	@echo "  fix: sudo apt-get install libmosquitto-dev librdkafka-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler libsqlite3-dev libyaml-dev libsystemd-dev libmicrohttpd-dev libjansson-dev libssl-dev libcmocka-dev pkg-config" >&2
	@echo "  or:  sudo test/stack/deps.sh" >&2
	@exit 1
endif

deps:
	@test/stack/deps.sh test

# A unit test or benchmark links only the modules it names here (so one
# module's build does not wait on another's); one not named links them all.
UNIT_DEPS_test_spool  := $(SPOOL_O)
UNIT_DEPS_test_spool_crash := $(SPOOL_O)
UNIT_DEPS_test_spool_big := $(SPOOL_O)
# test_spool_fault makes the in-flight set refuse a member now and then
UNIT_DEPS_test_spool_fault := $(SPOOL_O)
UNIT_LINK_test_spool_fault := -Wl,--wrap=idset_put
UNIT_DEPS_test_idset  := spool/idset.o
UNIT_DEPS_test_numfmt := bridge/numfmt.o
UNIT_DEPS_test_kafka_out := bridge/kafka_out.o bridge/log.o bridge/secret.o $(SPOOL_O)
UNIT_DEPS_test_outbox := bridge/outbox.o bridge/fat.o bridge/chunk.o bridge/record.o \
                         bridge/prom.o $(UNIT_DEPS_test_kafka_out)
UNIT_DEPS_test_chunk  := bridge/chunk.o bridge/record.o
PB_SCHEMA_O = bridge/pb_schema.o bridge/pb_schema_build.o bridge/pb_schema_text.o
PB_O                  := bridge/pb.o bridge/pb_json.o bridge/pb_json_wkt.o \
                         bridge/numfmt.o $(PB_SCHEMA_O)
CONF_O                := bridge/conf.o bridge/conf_keys.o bridge/units.o \
                         bridge/conf_env.o bridge/conf_files.o bridge/conf_diff.o \
                         bridge/conf_value.o
UNIT_DEPS_test_conf   := $(CONF_O) bridge/route.o
UNIT_DEPS_test_conf_secrets := $(CONF_O)
UNIT_DEPS_test_units  := bridge/units.o
UNIT_DEPS_test_route  := bridge/route.o $(CONF_O)
UNIT_DEPS_test_pb     := $(PB_O) testproto/alltypes.pb-c.o
DECODE_O              := bridge/convert.o bridge/payload.o bridge/route.o \
                         bridge/schemas.o bridge/jsonp.o bridge/spb.o \
                         $(CONF_O) $(PB_O)
UNIT_DEPS_test_convert := $(DECODE_O)
UNIT_DEPS_test_batch  := bridge/batch.o
UNIT_DEPS_test_redeliver := bridge/redeliver.o
UNIT_DEPS_test_stats  := bridge/stats.o
UNIT_DEPS_test_record := bridge/record.o
UNIT_DEPS_test_mqtt_in := bridge/mqtt_in.o bridge/mqtt_tls.o bridge/log.o
UNIT_DEPS_test_http   := bridge/http.o bridge/prom.o bridge/log.o
UNIT_DEPS_test_prom   := bridge/prom.o
UNIT_DEPS_test_kstats := bridge/kstats.o
UNIT_DEPS_test_metrics := bridge/metrics.o bridge/prom.o bridge/kstats.o \
                          bridge/http.o bridge/log.o
UNIT_DEPS_test_pb_schema = $(PB_SCHEMA_O) $(TESTSCHEMA_O)
BENCH_DEPS_spool_bench := $(SPOOL_O)
BENCH_DEPS_drain_bench := bridge/outbox.o bridge/fat.o bridge/chunk.o bridge/record.o bridge/prom.o \
                          bridge/kafka_out.o bridge/log.o bridge/secret.o $(SPOOL_O)
BENCH_DEPS_decode_bench := $(PB_O) bridge/schemas.o
BENCH_DEPS_pb_schema_bench = $(PB_SCHEMA_O) $(TESTSCHEMA_O)
objs_for = $(if $($(1)),$(addprefix $(B)/,$($(1))) $(PROTO_O),$(LIB_O))

.SECONDEXPANSION:

# --- build ---------------------------------------------------------------
$(B)/proto/%.pb-c.c $(B)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=proto --c_out=$(B)/proto $<

# The built-in types as one descriptor set, embedded as a byte array.
$(B)/proto/builtin.desc: $(PROTOS)
	@mkdir -p $(@D)
	@echo "  PROTOC  $@"
	$(Q)protoc-c --proto_path=proto --descriptor_set_out=$@ $(notdir $(PROTOS))
$(BUILTIN_C): $(B)/proto/builtin.desc
	@echo "  GEN     $@"
	$(Q){ echo '/* generated by the Makefile from the .proto files in proto/: a descriptor set */'; \
	  echo '#include <stddef.h>'; \
	  echo 'extern const unsigned char schemas_builtin_set[];'; \
	  echo 'extern const size_t schemas_builtin_len;'; \
	  echo 'const unsigned char schemas_builtin_set[] = {'; \
	  od -An -v -tx1 $< | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t schemas_builtin_len = sizeof schemas_builtin_set;'; } >$@.tmp
	$(Q)mv $@.tmp $@

# Test-only schemas (every protobuf field type) for the decode tests.
$(B)/testproto/%.pb-c.c $(B)/testproto/%.pb-c.h: test/unit/fixtures/%.proto
	@mkdir -p $(@D)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=test/unit/fixtures --c_out=$(B)/testproto $<
$(B)/testproto/%.o: $(B)/testproto/%.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(OPT) $(SANFLAGS) -c -o $@ $<
$(B)/test/unit/test_pb.o: $(B)/testproto/alltypes.pb-c.h
$(B)/test/unit/test_pb.o: CPPFLAGS += -I$(B)/testproto

# descriptor.proto (libprotobuf-dev) for the run-time schema loader.
$(B)/pbdesc/%.pb-c.c $(B)/pbdesc/%.pb-c.h: $(PROTO_INC)/%.proto
	@mkdir -p $(@D)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=$(PROTO_INC) --c_out=$(B)/pbdesc $*.proto

# The run-time schema tests and bench: a multi-file schema of our own,
# compiled with protoc-c to compare with (config.proto has proto3 optional
# fields, which protoc-c 1.4 cannot compile: it is loaded at run time only),
# and descriptor sets made by protoc (protobuf-compiler).
SCHEMA_SRC  := test/unit/fixtures/schema
SCHEMA_PROTOS := $(shell find $(SCHEMA_SRC) -name '*.proto' 2>/dev/null)
TESTSCHEMA  := acme/common/v1/device acme/common/v1/units acme/meter/v2/reading \
               $(addprefix google/protobuf/,any duration empty field_mask \
                 struct timestamp wrappers)
TESTSCHEMA_O := $(addprefix testschema/,$(addsuffix .pb-c.o,$(TESTSCHEMA)))
TESTSCHEMA_H := $(addprefix $(B)/testschema/,$(addsuffix .pb-c.h,$(TESTSCHEMA)))
SCHEMA_DESC := $(addprefix $(B)/schema/,all.desc device.desc meter.desc \
                 wkt.desc bad-group.desc bad-extend.desc bad-nested-extend.desc \
                 json.desc alltypes.desc)
$(B)/testschema/google/protobuf/%.pb-c.c $(B)/testschema/google/protobuf/%.pb-c.h: \
		$(PROTO_INC)/google/protobuf/%.proto
	@mkdir -p $(@D)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=$(PROTO_INC) --c_out=$(B)/testschema google/protobuf/$*.proto
$(B)/testschema/%.pb-c.c $(B)/testschema/%.pb-c.h: $(SCHEMA_SRC)/%.proto
	@mkdir -p $(@D)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=$(SCHEMA_SRC) --proto_path=$(PROTO_INC) \
	  --c_out=$(B)/testschema $*.proto
$(B)/testschema/%.o: $(B)/testschema/%.c | $(TESTSCHEMA_H)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) -I$(B)/testschema -include $(SCHEMA_SRC)/protoc_c_inf.h \
	  $(PKG_CFLAGS) $(OPT) $(SANFLAGS) -w -c -o $@ $<
# protoc's include path: ours, then the well-known types'.
PROTOC_SET = protoc --proto_path=$(SCHEMA_SRC) --proto_path=$(PROTO_INC) --descriptor_set_out=$@
$(B)/schema/all.desc: $(SCHEMA_PROTOS)
	@mkdir -p $(@D)
	@echo "  PROTOC  $@"
	$(Q)$(PROTOC_SET) --include_imports acme/meter/v2/reading.proto acme/meter/v2/config.proto
$(B)/schema/json.desc: $(SCHEMA_PROTOS)
	@mkdir -p $(@D)
	$(Q)$(PROTOC_SET) --include_imports acme/meter/v2/json.proto acme/meter/v2/config.proto \
	  acme/meter/v2/options.proto
$(B)/schema/alltypes.desc: test/unit/fixtures/alltypes.proto
	@mkdir -p $(@D)
	$(Q)protoc --proto_path=test/unit/fixtures --descriptor_set_out=$@ alltypes.proto
$(B)/schema/device.desc: $(SCHEMA_PROTOS)
	@mkdir -p $(@D)
	$(Q)$(PROTOC_SET) acme/common/v1/device.proto acme/common/v1/units.proto
$(B)/schema/meter.desc: $(SCHEMA_PROTOS)
	@mkdir -p $(@D)
	$(Q)$(PROTOC_SET) acme/meter/v2/reading.proto acme/meter/v2/config.proto
$(B)/schema/wkt.desc:
	@mkdir -p $(@D)
	$(Q)$(PROTOC_SET) $(addprefix google/protobuf/,$(addsuffix .proto,any duration \
	  empty field_mask struct timestamp wrappers))
$(B)/schema/bad-%.desc: $(SCHEMA_SRC)/bad/%.proto
	@mkdir -p $(@D)
	$(Q)$(PROTOC_SET) bad/$*.proto
$(B)/test/unit/test_pb_schema.o $(B)/test/bench/pb_schema_bench.o: $(TESTSCHEMA_H)
$(B)/test/unit/test_pb_schema.o $(B)/test/bench/pb_schema_bench.o: \
	CPPFLAGS += -I$(B)/testschema -DSCHEMA_BUILD='"$(B)/schema"'
$(B)/unit/test_pb_schema $(B)/bench/pb_schema_bench: | $(SCHEMA_DESC)
$(B)/unit/test_payload: | $(SCHEMA_DESC)
$(B)/test/unit/test_payload.o: CPPFLAGS += -DSCHEMA_BUILD='"$(B)/schema"'
UNIT_DEPS_test_payload = $(DECODE_O)

# Generated code is not ours to keep -Wconversion clean.
$(PROTO_O): %.o: %.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(OPT) $(SANFLAGS) -c -o $@ $<

$(B)/%.o: %.c | $(PROTO_H)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

$(B)/mqtt2kafka: $(MAIN_O) $(LIB_O)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/tools/%: $(B)/test/tools/%.o $(PROTO_O)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

$(B)/bench/%: $(B)/test/bench/%.o $$(call objs_for,BENCH_DEPS_$$*)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

# The herd publisher is a client only: no bridge module.
$(B)/bench/m2k-herd: $(B)/test/bench/m2k-herd.o $(PROTO_O)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/unit/%: $(B)/test/unit/%.o $$(call objs_for,UNIT_DEPS_$$*)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $(UNIT_LINK_$*) -o $@ $^ $(PKG_LIBS) $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null) -lpthread

# --- tests ---------------------------------------------------------------
# Unit tests: each cmocka binary runs on its own; one line sums them up.
# test_prom checks its output with promtool (Debian's prometheus, from
# test/stack/deps.sh test); here a missing promtool fails rather than skips.
unit: check-deps $(UNIT_BIN) $(B)/mqtt2kafka
	@M2K_REQUIRE_PROMTOOL=1 test/run-unit $(UNIT_BIN)

# Integration tests against a real Mosquitto and a real Kafka broker that
# test/stack/ starts on loopback (or the brokers named by MQTT2KAFKA_TEST_*).
it: all
	@M2K_BUILD=$(abspath $(B)) $(PYTHON) -m pytest -q -ra test/it $(PYTEST_ARGS)

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory it

san:
	@$(MAKE) --no-print-directory SAN=1 unit

lint:
	test/lint-stages
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -I. bridge spool test/tools
	clang-format --dry-run --Werror bridge/*.c bridge/*.h spool/*.c spool/*.h test/tools/*.c \
	  test/unit/*.c

fmt:
	clang-format -i bridge/*.c bridge/*.h spool/*.c spool/*.h test/tools/*.c test/unit/*.c

demo: all
	@test/demo.sh

# Benchmarks (test/bench/bench.py; not part of `make test`): a private
# stack on its own ports, results in test/bench/results/.
bench: all
	@test/stack/deps.sh bench
	@M2K_BUILD=$(abspath $(B)) $(PYTHON) test/bench/bench.py $(BENCH_ARGS)

bench-quick: all
	@test/stack/deps.sh bench
	@M2K_BUILD=$(abspath $(B)) $(PYTHON) test/bench/bench.py --quick $(BENCH_ARGS)

# packaging/grafana/mqtt2kafka-panels.png: two bridges on the test stack
# (stack.sh up first; M2K_* for a private one), a real Prometheus, Kafka
# stopped for a minute, and the dashboard's own queries drawn with gnuplot.
dashboard-picture: all
	@test/stack/deps.sh bench
	@M2K_BUILD=$(abspath $(B)) $(PYTHON) packaging/grafana/picture.py

# The Debian package (packaging/): `make deb` for this machine, `make deb
# ARCH=arm64|armhf` cross-builds (unit tests under qemu-user). deb-check
# builds all three, runs lintian, and installs, runs, upgrades, removes and
# purges the package in a debootstrap'ed Debian 12 root (test/pkg/deb-check).
ARCH ?= $(shell dpkg --print-architecture 2>/dev/null)
deb:
	@test/pkg/deps.sh $(ARCH)
	@packaging/build-deb $(ARCH)

deb-check:
	@test/pkg/deb-check

# libFuzzer targets (clang, not part of `make test`): the config parser,
# the payload decoder, the decode stage (JSON, Sparkplug B, runtime types)
# and the descriptor loader, each for FUZZ_SECONDS from its seed corpus; what they
# learn is kept in build-fuzz/. A crash leaves its input there and fails.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
PB_SRC       := bridge/pb.c bridge/pb_json.c bridge/pb_json_wkt.c bridge/numfmt.c \
                $(addsuffix .c,$(basename $(PB_SCHEMA_O)))
DECODE_SRC   := bridge/route.c bridge/payload.c bridge/convert.c bridge/schemas.c \
                bridge/jsonp.c bridge/spb.c
CONF_SRC     := bridge/conf.c bridge/conf_keys.c bridge/units.c bridge/conf_env.c \
                bridge/conf_files.c bridge/conf_diff.c bridge/conf_value.c
FUZZ_DIR     := build-fuzz
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -D_GNU_SOURCE $(LFS) -I. -I$(B)/proto -I$(B)/pbdesc -I$(B)/testproto \
                $(PKG_CFLAGS)
fuzz: check-deps $(PROTO_C) $(B)/testproto/alltypes.pb-c.c $(SCHEMA_DESC)
	@mkdir -p $(FUZZ_DIR)/conf $(FUZZ_DIR)/decode $(FUZZ_DIR)/pb_schema \
	  $(FUZZ_DIR)/payload
	@echo "  FUZZCC  $(FUZZ_DIR)/fuzz_conf $(FUZZ_DIR)/fuzz_decode"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $(FUZZ_DIR)/fuzz_conf test/fuzz/fuzz_conf.c \
	  $(CONF_SRC) $(DECODE_SRC) $(PB_SRC) $(PROTO_C) $(PKG_LIBS)
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $(FUZZ_DIR)/fuzz_decode test/fuzz/fuzz_decode.c \
	  $(PB_SRC) $(PROTO_C) $(B)/testproto/alltypes.pb-c.c $(PKG_LIBS)
	cd $(FUZZ_DIR) && ../test/fuzz/run ./fuzz_conf $(FUZZ_SECONDS) conf ../conf \
	  ../test/fuzz/corpus/conf
	cd $(FUZZ_DIR) && ../test/fuzz/run ./fuzz_decode $(FUZZ_SECONDS) decode \
	  ../test/fuzz/corpus/decode
	@echo "  FUZZCC  $(FUZZ_DIR)/fuzz_payload"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -DSCHEMA_DESC='"$(abspath $(B))/schema/json.desc"' \
	  -o $(FUZZ_DIR)/fuzz_payload test/fuzz/fuzz_payload.c $(CONF_SRC) $(DECODE_SRC) \
	  $(PB_SRC) $(PROTO_C) $(PKG_LIBS)
	cd $(FUZZ_DIR) && ../test/fuzz/run ./fuzz_payload $(FUZZ_SECONDS) payload \
	  ../test/fuzz/corpus/payload
	@echo "  FUZZCC  $(FUZZ_DIR)/fuzz_pb_schema"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $(FUZZ_DIR)/fuzz_pb_schema test/fuzz/fuzz_pb_schema.c \
	  $(addsuffix .c,$(basename $(PB_SCHEMA_O))) $(PBDESC_C) $(PKG_LIBS)
	cd $(FUZZ_DIR) && ../test/fuzz/run ./fuzz_pb_schema $(FUZZ_SECONDS) pb_schema \
	  ../$(B)/schema
	@echo "  FUZZCC  $(FUZZ_DIR)/fuzz_kstats"
	@mkdir -p $(FUZZ_DIR)/kstats
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $(FUZZ_DIR)/fuzz_kstats test/fuzz/fuzz_kstats.c \
	  bridge/kstats.c $(PKG_LIBS)
	cd $(FUZZ_DIR) && ../test/fuzz/run ./fuzz_kstats $(FUZZ_SECONDS) kstats \
	  ../test/fuzz/corpus/kstats

clean:
	rm -rf build build-san build-fuzz

# Keep generated sources and objects: make would delete them as
# intermediates of the pattern chains above.
.SECONDARY:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
