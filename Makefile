# rerankd: see README.md. `make run`, `make test`, `make bench`, `make sanitize`.
PREFIX   ?= /usr/local
# Install layout: the standard LuaJIT search paths under PREFIX (luarocks passes its own).
BINDIR   ?= $(PREFIX)/bin
LUADIR   ?= $(PREFIX)/share/lua/5.1
LIBDIR   ?= $(PREFIX)/lib/lua/5.1
DATADIR  ?= $(PREFIX)/share/rerankd
CC       ?= cc
PKGS     := luajit libcurl libevent yaml-0.1
# per package, so the Lua module still finds lua.h where libevent (daemon only) is absent;
# LUA_INCDIR (luarocks) adds the host Lua's headers
PKG_CFLAGS = $(foreach p,$(PKGS),$(shell pkg-config --cflags $(p) 2>/dev/null)) $(if $(LUA_INCDIR),-I$(LUA_INCDIR))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
VERSION  := 0.1.0
OPT      ?= -O2
CFLAGS   ?=
CFLAGS   += -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -DRERANKD_VERSION='"$(VERSION)"' \
            -DRERANKD_DATADIR='"$(PREFIX)/share/rerankd"' $(PKG_CFLAGS)
LDFLAGS  ?=
LDLIBS   += $(PKG_LIBS) -lstemmer -levent_pthreads -lpthread -lm -ldl
BUILD    ?= build

# Sources shared by the daemon and the Lua C module rerank/core.so.
LIB_SRC    := core/body.c core/topk.c core/tokenize.c core/analyzer.c core/bm25.c core/bm25_par.c core/bm25_prf.c core/lbm25.c core/json.c core/json_answer.c core/json_splice.c core/yaml.c core/yaml_scalar.c core/lcore.c core/log.c core/curl_call.c core/fetch_blocking.c
DAEMON_SRC := core/main.c core/cli.c core/server.c core/loop.c core/http.c core/http_parse.c core/luahost.c core/fetch_loop.c core/ldaemon.c core/redis.c core/deadline.c
LIB_OBJ    := $(LIB_SRC:core/%.c=$(BUILD)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:core/%.c=$(BUILD)/%.o)
PIC_OBJ    := $(LIB_SRC:core/%.c=$(BUILD)/pic/%.o)
CTEST_SRC  := $(wildcard tests/c/test_*.c)
CTEST_BIN  := $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
BIN        ?= rerankd
MODULE     ?= rerank/core.so

.PHONY: all deps build lib run test unit sanitize bench clean install install-lib lint fuzz soak
all: build
build: $(BIN) $(MODULE)
lib: $(MODULE)

deps:
	@sh scripts/deps.sh $(DEPS_SET)

$(BIN): $(DAEMON_OBJ) $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lhttp_parser -Wl,-E

# The Lua module resolves lua_* from the host (luajit or nginx), so it does not link libluajit.
$(MODULE): $(PIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -o $@ $^ $(shell pkg-config --libs libcurl yaml-0.1) -lstemmer -lm

$(BUILD)/%.o: core/%.c core/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/pic/%.o: core/%.c core/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -DRERANK_LUA_MODULE -c -o $@ $<

# tests/c/test_X.c unit-tests core/X.c alone (bm25 with the tokenizer and analyzer it scores through).
$(BUILD)/tests/test_%: tests/c/test_%.c $(BUILD)/%.o tests/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -o $@ $< $(BUILD)/$*.o $(LDLIBS)
BM25_OBJ := $(BUILD)/bm25.o $(BUILD)/bm25_par.o $(BUILD)/bm25_prf.o $(BUILD)/tokenize.o $(BUILD)/analyzer.o
$(BUILD)/tests/test_bm25 $(BUILD)/tests/test_bm25_par $(BUILD)/tests/test_analyzer: $(BUILD)/tests/test_%: tests/c/test_%.c $(BM25_OBJ) tests/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -o $@ $< $(BM25_OBJ) $(LDLIBS)

# http_parse frames requests over http_parser (linked by the daemon only).
$(BUILD)/tests/test_http_parse: tests/c/test_http_parse.c $(BUILD)/http_parse.o tests/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -o $@ $< $(BUILD)/http_parse.o $(LDLIBS) -lhttp_parser

# json and yaml push Lua values: a bare lua_State from libluajit (in LDLIBS) drives them.
$(BUILD)/tests/test_json: tests/c/test_json.c $(BUILD)/json.o $(BUILD)/json_answer.o $(BUILD)/body.o $(BUILD)/tokenize.o tests/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -o $@ $< $(BUILD)/json.o $(BUILD)/json_answer.o $(BUILD)/body.o $(BUILD)/tokenize.o $(LDLIBS)
$(BUILD)/tests/test_yaml: tests/c/test_yaml.c $(BUILD)/yaml.o $(BUILD)/yaml_scalar.o tests/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icore -o $@ $< $(BUILD)/yaml.o $(BUILD)/yaml_scalar.o $(LDLIBS)

# make run [CONFIG=file.yaml] [PORT=n]: PORT overrides server.listen's port (0 = any free port)
CONFIG   ?= config.yaml
PORT     ?=
run: DEPS_SET=build
run: deps build
	./rerankd -c $(CONFIG)$(if $(PORT), -p $(PORT))

# Every suite; the last line is "N passed, M failed".
test: deps build $(CTEST_BIN)
	@sh tests/run.sh

unit: build $(CTEST_BIN)
	@SUITES="c lua" sh tests/run.sh

# ASan/UBSan build in build/asan (binary and module there too: the normal build is untouched)
ASAN_FLAGS = -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
TSAN_FLAGS = -O1 -fno-omit-frame-pointer -fsanitize=thread
sanitize: deps build
	$(MAKE) CC=clang OPT="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" BUILD=build/asan \
	        BIN=build/asan/rerankd MODULE=build/asan/rerank/core.so \
	        build/asan/rerankd build/asan/rerank/core.so $(patsubst build/%,build/asan/%,$(CTEST_BIN))
	@# the C test that runs threads (a bm25 pass shared out), under ThreadSanitizer too
	$(MAKE) CC=clang OPT="$(TSAN_FLAGS)" BUILD=build/tsan build/tsan/tests/test_bm25_par
	build/tsan/tests/test_bm25_par > build/tsan/test_bm25_par.out 2>&1 || { cat build/tsan/test_bm25_par.out; exit 1; }
	ASAN_OPTIONS=detect_leaks=0 RERANKD_SANITIZE=1 CTEST_BUILD=build/asan RERANKD_BIN=$(CURDIR)/build/asan/rerankd \
	        CORE_CPATH="$(CURDIR)/build/asan/?.so" sh tests/run.sh

bench: deps build
	@sh bench/run.sh

# Mixed load with RSS/fd samples; fails on a growth trend. SOAK_SECONDS (default 600)
soak: deps build
	@sh tests/soak/soak.sh

# libFuzzer targets (clang); FUZZ_SECONDS per target (default 600)
fuzz: deps build
	@sh tests/fuzz/run.sh

lint:
	luacheck --no-color -q lua providers tests examples

install: build install-lib
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 rerankd $(DESTDIR)$(BINDIR)/rerankd
	@echo "installed rerankd in $(BINDIR), the library in $(LUADIR) and $(LIBDIR)."
	@echo "Plain LuaJIT (not needed when PREFIX is LuaJIT's own, /usr/local or /usr):"
	@echo "  export LUA_PATH='$(LUADIR)/?.lua;$(LUADIR)/?/init.lua;;'"
	@echo "  export LUA_CPATH='$(LIBDIR)/?.so;;'"
	@echo "nginx (http block):"
	@echo "  lua_package_path \"$(LUADIR)/?.lua;$(LUADIR)/?/init.lua;;\";"
	@echo "  lua_package_cpath \"$(LIBDIR)/?.so;;\";"

# The library alone (luarocks runs this): require "rerank" with the standard LuaJIT paths.
# rerank/site.lua tells lua/rerank/config/paths.lua where the providers and templates went.
install-lib: $(MODULE)
	install -d $(DESTDIR)$(LIBDIR)/rerank $(DESTDIR)$(LUADIR) $(DESTDIR)$(DATADIR)
	install -m 755 $(MODULE) $(DESTDIR)$(LIBDIR)/rerank/core.so
	cp -R lua/rerank $(DESTDIR)$(LUADIR)/
	cp -R lua providers $(DESTDIR)$(DATADIR)/
	printf '%s\n' '-- written by make install: where rerankd'"'"'s providers and templates are' \
	  'return { root = "$(DATADIR)" }' > $(DESTDIR)$(LUADIR)/rerank/site.lua

clean:
	rm -rf build rerankd rerank/core.so
