-- plume._lm: language-model calls inside model programs -- lm:context(prompt) and the context methods that
-- may pause the particle (they go through plume._request, which batches them across particles under
-- plume.smc; the C primitives are in lang/l_lmctx.c).
return function(plume)
  local reg = debug.getregistry()
  local lm_methods = reg["plume.lm"] and reg["plume.lm"].methods
  local C = reg["plume.lmctx"].__index
  if not lm_methods then return end

  --- lm:context(prompt) -> ctx: a token context that starts after prompt
  function lm_methods.context(lm, prompt)
    if prompt ~= nil and type(prompt) ~= "string" then
      error("lm:context: prompt must be a string (got " .. type(prompt) .. ")", 2)
    end
    return plume._lmctx_new(lm, prompt or "")
  end

  local function next_dist(ctx)
    return ctx:_cached() or plume._request(plume._lmctx_batch, ctx)
  end

  --- ctx:next_token() -> a categorical distribution over token ids (0-based); m:sample from it appends the token
  function C.next_token(ctx)
    return ctx:_bind(next_dist(ctx))
  end

  --- ctx:observe_text(str [, m]) -> log p(str | context); the text joins the context, and with m the
  --- log-probability is a factor of the program (a checkpoint under plume.smc)
  function C.observe_text(ctx, str, m)
    if type(str) ~= "string" then error("ctx:observe_text: text must be a string (got " .. type(str) .. ")", 2) end
    local lp = ctx:_score(str)
    if m then m:factor(lp) end
    return lp
  end

  --- ctx:mask(allowed [, {final = true}]) -> bernoulli(P(next token in allowed)); observing it true restricts
  --- the next token to allowed, false to the rest (staged sampling: m:observe("in_set", ctx:mask(ids), true)).
  --- allowed is a list of token ids, or a constraint (plume.regex, plume.grammar, plume.json_schema): the
  --- tokens whose bytes keep the generated text a prefix of the language (EOS when it is a sentence); with
  --- final = true, EOS alone (when the text is a sentence).
  local cons_meta = reg["plume.constraint"]
  function C.mask(ctx, allowed, opts)
    if getmetatable(allowed) == cons_meta then
      local final = opts ~= nil and opts.final == true
      local p = ctx:_cmass(allowed, next_dist(ctx), final)
      local d = plume.dist.bernoulli(p)
      return plume._dist_hook(d, function(v) ctx:_cset_mask(allowed, v == true or v == 1, final) end)
    end
    if type(allowed) ~= "table" then
      error("ctx:mask: allowed must be a list of token ids or a constraint (got " .. type(allowed) .. ")", 2)
    end
    local p = ctx:_mass(next_dist(ctx), allowed)
    local d = plume.dist.bernoulli(p)
    return plume._dist_hook(d, function(v) ctx:_set_mask(allowed, v == true or v == 1) end)
  end
end
