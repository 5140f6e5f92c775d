-- LuaRocks: `luarocks make` (in a clone) builds the plume Lua module with the Makefile and installs it into a
-- Lua tree. plume's own Lua sources are compiled into plume.so, so the module is one file.
package = "plume"
version = "0.1.0-1"
source = {
   url = "git+https://example.invalid/plume.git",   -- built from the clone by `luarocks make`
}
description = {
   summary = "Probabilistic programming: a C runtime with a Lua 5.4 front end",
   detailed = [[
plume runs inference natively on models written in Lua: exact algorithms for hidden Markov models,
linear-Gaussian state space models and continuous-time chains; trace MCMC, importance sampling and
sequential Monte Carlo for programs; compiled state-space models and SDEs; language models as
distributions. Needs the Debian packages listed in scripts/deps.sh (GSL, Boehm GC, libffi, readline,
libcsv, libcjson).]],
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
build = {
   type = "make",
   build_target = "rock",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INCDIR = "$(LUA_INCDIR)",
   },
   install_target = "install-rock",
   install_variables = {
      LIBDIR = "$(LIBDIR)",
   },
}
