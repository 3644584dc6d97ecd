-- Distribution-based score fusion (Qdrant's dbsf): per list, mean μ and sample standard
-- deviation σ (n - 1); each score becomes (s - (μ - 3σ)) / ((μ + 3σ) - (μ - 3σ)), not clipped;
-- a single-item or zero-variance list gives 0.5. F(d) = Σ_i w_i × norm_i(d). Distance
-- lists: 1 - d first.
local fuse = require "rerank.fuse"

local M = { name = "dbsf", scores = true, params = {} }

function M.fuse(lists)
  local N = lists.n_docs
  local F = fuse.zeros(N)
  for i = 1, #lists do
    local l = lists[i]
    local w, docs, n = l.w, l.docs, l.n
    local s = fuse.scaled(l.sims, n) -- +-1e308 stays finite (a power-of-two scale)
    local mean, std = fuse.mean_std(s, n, true)
    if n < 2 or std == 0 then
      for j = 1, n do
        local d = docs[j]
        F[d] = F[d] + w * 0.5
      end
    else
      local lo, hi = mean - 3 * std, mean + 3 * std
      local r = hi - lo
      for j = 1, n do
        local d = docs[j]
        F[d] = F[d] + w * ((s[j] - lo) / r)
      end
    end
  end
  return F
end

return M
