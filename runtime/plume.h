/* plume.h -- the C runtime of plume (libplume), usable without Lua: include this one header.
** See doc/manual.md ("The C API") for the conventions: status codes, caller-owned outputs, GC ownership. */
#ifndef PLUME_H
#define PLUME_H

#include "ctx.h"
#include "rng.h"
#include "dist.h"
#include "par.h"
#include "diag.h"
#include "draws.h"
#include "trace.h"
#include "hmm.h"
#include "lgssm.h"
#include "ctmc.h"
#include "cthmm.h"
#include "expr.h"
#include "ssm.h"
#include "sde.h"
#include "target.h"
#include "mcmc.h"
#include "hmc.h"
#include "lm.h"
#include "lm_ngram.h"
#include "lm_gguf.h"
#include "lm_llama.h"
#include "lmchain.h"
#include "resample.h"
#include "bffg.h"
#include "conformal.h"
#include "markov_mix.h"
#include "results.h"
#include "mh_trace.h"
#include "pfilter.h"
#include "smooth.h"

#endif
