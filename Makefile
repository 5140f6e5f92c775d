# plume -- build, test, install. `make run` and `make test` are all a newcomer needs.
# SAN=1 builds everything with AddressSanitizer and UBSan into build/san (tests then use that build).

PREFIX ?= /usr/local
CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

ifeq ($(SAN),1)
BUILD := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else
BUILD ?= build
SANFLAGS :=
OPT := -O2
endif

# LuaRocks passes LUA_INCDIR (plume-*.rockspec); otherwise pkg-config finds Debian's lua5.4
LUA_CFLAGS := $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4))
LUA_LIBS := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
VERSION := 0.1.0

# runtime/ has one folder per layer (see doc/manual.md, Architecture); headers include each other by name.
RUNTIME_DIRS := runtime runtime/base runtime/compiler runtime/markov runtime/engines runtime/lm
RUNTIME_INC := $(addprefix -I,$(RUNTIME_DIRS))
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -DPLUME_VERSION='"$(VERSION)"' $(OPT) -g -Wall -Wextra -Werror \
              -fPIC $(RUNTIME_INC) -Ilang -I$(BUILD)/gen $(LUA_CFLAGS) $(SANFLAGS) $(CFLAGS)
# Open MPI (runtime/base/comm.c): MPI=1 requires it, MPI=0 builds without it, and by default it is used when
# pkg-config finds it. Only comm.c sees mpi.h; a build without MPI is a one-rank build of the same code.
MPI ?= auto
ifneq ($(MPI),0)
MPI_FOUND := $(shell pkg-config --exists ompi-c 2>/dev/null && echo yes)
ifeq ($(MPI_FOUND),yes)
MPI_CFLAGS := -DPLM_MPI $(shell pkg-config --cflags ompi-c)
MPI_LIBS := $(shell pkg-config --libs ompi-c)
else ifeq ($(MPI),1)
$(error MPI=1 but pkg-config cannot find Open MPI (ompi-c): install libopenmpi-dev)
endif
endif
LIBS := $(LUA_LIBS) -lgsl -lgslcblas -lgc -lffi -lcsv -lcjson -lreadline -lpthread -ldl -lm $(MPI_LIBS)
LDFLAGS_ALL := $(SANFLAGS) $(LDFLAGS)

RUNTIME_SRC := $(foreach d,$(RUNTIME_DIRS),$(wildcard $(d)/*.c))
LANG_SRC := $(filter-out lang/main.c,$(wildcard lang/*.c))
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(RUNTIME_SRC) $(LANG_SRC)) $(BUILD)/obj/gen/embedded.o
LUA_SRC := $(shell find lang/plume stdlib -name '*.lua' 2>/dev/null | sort)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
HEADERS := $(foreach d,$(RUNTIME_DIRS),$(wildcard $(d)/*.h)) lang/plume_lua.h

.PHONY: all deps run test bench install clean check-deps rock install-rock proposals
all: $(BUILD)/plume $(BUILD)/libplume.a $(BUILD)/libplume.so $(BUILD)/plume.so $(TEST_BIN)

deps:
	@sh scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/plume examples/coin.lua

test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) SAN=$(SAN) sh tests/run.sh

# The shipped learned proposals (stdlib/proposals/*.plmprop), retrained from the fixed seeds in the script.
proposals: $(BUILD)/plume
	$(BUILD)/plume --quiet scripts/train_proposals.lua stdlib/proposals

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@BUILD=$(BUILD) sh bench/run.sh

$(BUILD)/obj/%.o: %.c $(HEADERS) $(wildcard lang/*.h) lang/modules.def
	@mkdir -p $(dir $@)
	@echo "CC  $<"
	@$(CC) $(CFLAGS_ALL) $(OBJ_CFLAGS) -c $< -o $@

# llama.cpp's headers (scripts/deps.sh puts them in build/llama) are seen by lm_llama.c only; without them it
# compiles to a stub that says how to get llama.cpp. The library itself is opened at run time.
LLAMA_DIR := $(CURDIR)/build/llama
$(BUILD)/obj/runtime/lm/lm_llama.o: OBJ_CFLAGS := -I$(LLAMA_DIR)/include -DPLM_LLAMA_DIR='"$(LLAMA_DIR)/lib"'
$(BUILD)/obj/runtime/lm/lm_llama.o: $(wildcard $(LLAMA_DIR)/include/llama.h)

# comm.o is rebuilt when the MPI choice changes (the stamp's text is the flags).
$(BUILD)/obj/runtime/base/comm.o: OBJ_CFLAGS := $(MPI_CFLAGS)
$(BUILD)/obj/runtime/base/comm.o: $(BUILD)/gen/mpi.stamp
$(BUILD)/gen/mpi.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(MPI_CFLAGS)' | cmp -s - $@ || echo '$(MPI_CFLAGS)' > $@
.PHONY: FORCE
FORCE:
# The shipped learned proposals are found from any working directory (plume.kernel.learned's default library).
$(BUILD)/obj/lang/l_learned.o: OBJ_CFLAGS := -DPLM_PROPOSALS_DIR='"$(CURDIR)/stdlib/proposals"' \
                                             -DPLM_PROPOSALS_SHARE='"$(PREFIX)/share/plume/proposals"'

$(BUILD)/embed: scripts/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -Wall -Wextra -Werror $< -o $@

$(BUILD)/gen/embedded.c: $(BUILD)/embed $(LUA_SRC)
	@mkdir -p $(dir $@)
	$(BUILD)/embed $@ $(LUA_SRC)

$(BUILD)/obj/gen/embedded.o: $(BUILD)/gen/embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libplume.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libplume.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libplume.so $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# The Lua C module for `require "plume"` from a stock lua5.4 interpreter. Linked "nodelete": lua_close
# dlcloses C modules, and unmapping libgc while its marker threads still run crashed some exits.
$(BUILD)/plume.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-z,nodelete $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/plume: $(BUILD)/obj/lang/main.o $(BUILD)/libplume.a
	$(CC) $(LDFLAGS_ALL) -rdynamic -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/%.c tests/check.h $(BUILD)/libplume.a
	@mkdir -p $(dir $@)
	@echo "CC  $<"
	@$(CC) $(CFLAGS_ALL) -Itests $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libplume.a $(LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libplume.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -O3 -march=native $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libplume.a $(LIBS)

# headers that some tests (and a benchmark) share
$(BUILD)/tests/test_expr_vec $(BUILD)/tests/test_learned_mix $(BUILD)/bench/grad_rate: tests/model_graphs.h
$(BUILD)/tests/test_bffg $(BUILD)/tests/test_bffg_sde $(BUILD)/tests/test_bffg_frozen: tests/bffg_chain.h
$(BUILD)/tests/test_bffg_fastpath $(BUILD)/tests/test_bffg_native $(BUILD)/tests/test_bffg_riccati: tests/sde_models.h

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/plume \
	           $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib/lua/5.4 $(DESTDIR)$(PREFIX)/share/lua/5.4
	install -m 755 $(BUILD)/plume $(DESTDIR)$(PREFIX)/bin/plume
	install -m 644 $(BUILD)/libplume.a $(DESTDIR)$(PREFIX)/lib/libplume.a
	install -m 755 $(BUILD)/libplume.so $(DESTDIR)$(PREFIX)/lib/libplume.so
	install -m 755 $(BUILD)/plume.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/plume.so
	install -m 644 $(filter-out %_impl.h,$(HEADERS)) $(DESTDIR)$(PREFIX)/include/plume/
	if [ -d stdlib ]; then cd stdlib && find . -name '*.lua' -exec install -D -m 644 {} $(DESTDIR)$(PREFIX)/share/lua/5.4/{} \; ; fi
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' scripts/plume.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/plume.pc
	install -D -m 644 doc/plume.1 $(DESTDIR)$(PREFIX)/share/man/man1/plume.1
	install -d $(DESTDIR)$(PREFIX)/share/plume/proposals
	install -m 644 stdlib/proposals/*.plmprop $(DESTDIR)$(PREFIX)/share/plume/proposals/

# `luarocks make` (plume-*.rockspec): build the Lua module, then install it into the tree's LIBDIR. plume's Lua
# parts and stdlib are compiled into plume.so, so it is the only file.
rock: $(BUILD)/plume.so

install-rock: rock
	install -d $(DESTDIR)$(LIBDIR)
	install -m 755 $(BUILD)/plume.so $(DESTDIR)$(LIBDIR)/plume.so

clean:
	rm -rf build
