# idsync - the two commands a new machine needs:
#   make demo   install what is needed, build, run a real sync demo
#   make test   install what is needed, build (ASan+UBSan, -Werror), run every test
#
# Other targets: build (release build in build/), format, format-check, bench, fuzz.

BUILD      ?= build
TESTBUILD  ?= build-test
PYTHON     ?= /usr/bin/python3
SOURCES     = $(shell git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 'tests/fuzz/*.c' 2>/dev/null)

.PHONY: all deps build test unit integration demo demo-files format format-check bench fuzz clean

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=release -Dtests=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(TESTBUILD)/build.ninja:
	meson setup $(TESTBUILD) --buildtype=debug -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false

test: deps $(TESTBUILD)/build.ninja format-check
	ninja -C $(TESTBUILD)
	$(MAKE) --no-print-directory unit integration

unit:
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
	  meson test -C $(TESTBUILD) --print-errorlogs

integration:
	IDSYNC=$(CURDIR)/$(TESTBUILD)/idsync CONNTOOL=$(CURDIR)/$(TESTBUILD)/tests/tools/conntool UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(PYTHON) -m pytest -q -ra tests/integration

demo: build
	$(PYTHON) examples/demo/run.py $(CURDIR)/$(BUILD)/idsync

demo-files: build
	./examples/demo/run-files.sh $(CURDIR)/$(BUILD)/idsync

format:
	clang-format -i $(SOURCES)

format-check:
	@out=$$(clang-format --dry-run $(SOURCES) 2>&1); \
	if [ -n "$$out" ]; then echo "$$out" | grep 'warning:' | head -20; \
	  echo "format-check: run 'make format'"; exit 1; fi; echo "format-check: ok"

bench: build
	./bench/run.sh $(CURDIR)/$(BUILD)/idsync

fuzz: deps
	CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false || true
	ninja -C build-fuzz

clean:
	rm -rf $(BUILD) $(TESTBUILD) build-fuzz
