/* cons_impl.h -- private to runtime/lm: the table of functions behind a plm_cons (constraint.h), which
** regex.c (DFA) and cfg.c (Earley charts) fill, and the cached vocabulary masks. */
#ifndef PLM_CONS_IMPL_H
#define PLM_CONS_IMPL_H

#include "constraint.h"

/* A vocabulary mask computed for one state, tagged with the vocabulary trie it belongs to. */
typedef struct plm_cmask {
    uint64_t vocab_id;
    size_t n_allowed;
    unsigned char allowed[];
} plm_cmask;

typedef struct plm_cons_ops {
    const char *kind;
    plm_cstate (*start)(plm_cons *c);                 /* a new reference */
    void (*retain)(plm_cons *c, plm_cstate s);        /* s is never DEAD here */
    void (*release)(plm_cons *c, plm_cstate s);       /* s is never DEAD here */
    int (*status)(const plm_cons *c, plm_cstate s);   /* s is never DEAD here */
    /* the state after byte b (a new reference; DEAD when b leaves the prefixes) */
    plm_status (*step)(plm_ctx *ctx, plm_cons *c, plm_cstate s, unsigned char b, plm_cstate *out);
    plm_cmask **(*mask_slot)(plm_cons *c, plm_cstate s);   /* where s's mask is cached */
    void (*destroy)(plm_cons *c);
} plm_cons_ops;

struct plm_cons {
    const plm_cons_ops *ops;
    void *impl;
};

#endif
