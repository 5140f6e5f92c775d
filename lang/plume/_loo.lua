-- plume._loo: the posterior's methods that evaluate the model at each draw (lang/l_loo.c): post:predict and
-- post:log_lik. plume.loo is in C.
return function(plume)
  --- post:predict([model, newdata] [, {seed =, threads =}]) -> posterior of the observed and deterministic sites
  plume.Posterior.predict = plume._predict
  --- post:log_lik([model, data]) -> posterior-shaped table of pointwise log-likelihoods (one column per observation)
  plume.Posterior.log_lik = plume._log_lik
end
