# stan_run.R -- one Stan run for bench/mcmc_peers.lua (Debian's r-cran-rstan): compile the model, sample
# `chains` chains one after the other (cores = 1, as plume and JAGS run here), and write the draws of the
# parameters as plume's CSV (chain,draw,<columns>) so that plume computes every ESS the same way.
# usage: Rscript stan_run.R model.stan data.R out.csv iter warmup chains seed [inits.R]
# (inits.R: starting values of some parameters for every chain; rstan draws the others as usual)
# prints: "compile <s> sampling <s> divergent <n>"
suppressMessages(library(rstan))
a <- commandArgs(trailingOnly = TRUE)
iter <- as.integer(a[4]); warmup <- as.integer(a[5]); chains <- as.integer(a[6]); seed <- as.integer(a[7])
data <- read_rdump(a[2])
# Debian ships Boost in /usr/include (r-cran-bh has no include folder of its own)
boost <- system.file("include", package = "BH")
if (!nzchar(boost) && file.exists("/usr/include/boost")) boost <- "/usr/include"
t_compile <- system.time(sm <- stan_model(a[1], auto_write = FALSE, boost_lib = boost))[["elapsed"]]
init <- "random"
if (length(a) >= 8) { init_values <- read_rdump(a[8]); init <- function() init_values }
fit <- sampling(sm, data = data, iter = warmup + iter, warmup = warmup, chains = chains, cores = 1, seed = seed,
                refresh = 0, init = init)
t_sample <- sum(get_elapsed_time(fit))
arr <- as.array(fit)
pars <- dimnames(arr)[[3]]
pars <- pars[pars != "lp__"]
rows <- list()
for (c in seq_len(dim(arr)[2])) {
  m <- arr[, c, pars, drop = FALSE][, 1, ]
  rows[[c]] <- cbind(chain = c, draw = seq_len(nrow(m)), m)
}
out <- do.call(rbind, rows)
colnames(out) <- c("chain", "draw", pars)
write.csv(out, a[3], row.names = FALSE, quote = FALSE)
sp <- get_sampler_params(fit, inc_warmup = FALSE)
div <- sum(sapply(sp, function(x) sum(x[, "divergent__"])))
cat(sprintf("compile %.3f sampling %.3f divergent %d\n", t_compile, t_sample, div))
