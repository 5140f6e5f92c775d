-- plume._sde: observation schemes for diffusions, plume.sde_obs{ times=, L=, noise= }: linear observations
-- v_i = L x(t_i) + N(0, Sigma) at increasing times t_i. Kept for the inference engines (BFFG); :sample and
-- :logpdf make it usable on simulated paths now.
return function(plume)
  local function is_matrix(m) return type(m) == "table" and type(m[1]) == "table" end

  function plume.sde_obs(opts)
    if type(opts) ~= "table" then error("plume.sde_obs: expected a table of options", 2) end
    for k in pairs(opts) do
      if k ~= "times" and k ~= "L" and k ~= "noise" then
        error(("plume.sde_obs: unknown option '%s' (options: times, L, noise)"):format(tostring(k)), 2)
      end
    end
    local times, L, noise = opts.times, opts.L, opts.noise
    if type(times) ~= "table" and type(times) ~= "userdata" then
      error("plume.sde_obs: times must be an array of increasing times", 2)
    end
    local n = #times
    if n < 1 then error("plume.sde_obs: times is empty", 2) end
    local ts = {}
    for i = 1, n do
      ts[i] = times[i]
      if type(ts[i]) ~= "number" then error(("plume.sde_obs: times[%d] must be a number"):format(i), 2) end
      if i > 1 and not (ts[i] > ts[i - 1]) then
        error(("plume.sde_obs: times must increase (times[%d] = %g after %g)"):format(i, ts[i], ts[i - 1]), 2)
      end
    end
    if L == nil then error("plume.sde_obs: L (the observation matrix, rows x dim) is required", 2) end
    if not is_matrix(L) then L = { L } end             -- a vector is one row
    local rows, dim = #L, #L[1]
    for i = 1, rows do
      if #L[i] ~= dim then error(("plume.sde_obs: L row %d has %d entries, expected %d"):format(i, #L[i], dim), 2) end
    end
    local Sigma
    if type(noise) == "number" then
      if not (noise > 0) then error("plume.sde_obs: noise (a variance) must be > 0", 2) end
      Sigma = {}
      for i = 1, rows do
        Sigma[i] = {}
        for j = 1, rows do Sigma[i][j] = i == j and noise or 0 end
      end
    elseif is_matrix(noise) and #noise == rows then
      Sigma = noise
    else
      error(("plume.sde_obs: noise must be a variance or a %d x %d covariance matrix"):format(rows, rows), 2)
    end
    plume.dist.mvnormal((function() local z = {} for i = 1, rows do z[i] = 0 end return z end)(), Sigma)   -- validates Sigma (positive definite)
    local obs = { times = ts, L = L, noise = Sigma, rows = rows, dim = dim }

    local function mean(x)
      if type(x) == "number" then x = { x } end
      if #x ~= dim then error(("sde_obs: a state must have %d values (got %d)"):format(dim, #x), 3) end
      return plume.matvec(L, x)
    end
    -- obs:sample(states): states[i] is x(t_i) (a number or a table); returns the observations v_i
    function obs:sample(states)
      local v = {}
      for i = 1, n do
        local d = plume.dist.mvnormal(mean(states[i]), Sigma)
        v[i] = d:sample()
        if rows == 1 then v[i] = v[i][1] end
      end
      return v
    end
    -- obs:logpdf(states, v): sum of log N(v_i; L x(t_i), Sigma)
    function obs:logpdf(states, v)
      local s = 0
      for i = 1, n do
        local vi = type(v[i]) == "number" and { v[i] } or v[i]
        s = s + plume.dist.mvnormal(mean(states[i]), Sigma):logpdf(vi)
      end
      return s
    end
    -- obs:at(times, path): the states of a simulated path (sde:simulate) at the observation times
    function obs:at(ptimes, path)
      local r, j = {}, 1
      for i = 1, n do
        while j <= #ptimes and ptimes[j] < ts[i] - 1e-9 * math.max(1, math.abs(ts[i])) do j = j + 1 end
        if j > #ptimes or math.abs(ptimes[j] - ts[i]) > 1e-9 * math.max(1, math.abs(ts[i])) then
          error(("sde_obs:at: the path has no state at t = %g (put the observation times on its grid)"):format(ts[i]), 2)
        end
        r[i] = path[j]
      end
      return r
    end
    return setmetatable(obs, { __tostring = function()
      return ("plume.sde_obs(%d times, %d x %d L)"):format(n, rows, dim)
    end })
  end
end
