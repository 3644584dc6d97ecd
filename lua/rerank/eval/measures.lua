-- Retrieval measures for `rerankd eval`, with trec_eval's definitions (and ranx's, which
-- follow them):
--   ranking  = array of document keys, best first (rerankd's order: score desc, ties by
--              input index asc; the measures only see positions, so ties never reorder)
--   qrels    = { [key] = grade } with grades integers >= 0; a document is relevant when its
--              grade >= 1 (trec_eval's default relevance level). Judged documents missing
--              from the ranking still count: in Recall's and MAP's denominators and in the
--              ideal DCG, as in trec_eval.
--   ndcg(ranking, qrels, k, gain)  DCG@k / IDCG@k, DCG = sum_{i<=k} g(grade_i) / log2(i + 1);
--                                  g = grade ("linear": trec_eval ndcg_cut, ranx ndcg) or
--                                  2^grade - 1 ("exp": ranx ndcg_burges); IDCG from the grades
--                                  of every judged document, best first
--   mrr(ranking, qrels, k)         1 / rank of the first relevant document in the top k, else 0
--   recall(ranking, qrels, k)      relevant in the top k / all relevant
--   ap(ranking, qrels)             sum over relevant documents at rank i of precision@i, divided
--                                  by all relevant (trec_eval map: the whole ranking, no cut)
-- Each returns nil for a query without relevant documents (trec_eval and ranx leave such
-- queries out of the mean; the caller counts them).
local M = {}

local log = math.log
local LN2 = log(2)

local function nrel(qrels)
  local r = 0
  for _, g in pairs(qrels) do if g >= 1 then r = r + 1 end end
  return r
end
M.relevant_count = nrel

local function gainf(g, gain)
  if gain == "exp" then return 2 ^ g - 1 end
  return g
end

function M.dcg(grades, k, gain)
  local s = 0
  for i = 1, math.min(k, #grades) do
    s = s + gainf(grades[i], gain) / (log(i + 1) / LN2)
  end
  return s
end

function M.ndcg(ranking, qrels, k, gain)
  if nrel(qrels) == 0 then return nil end
  local got = {}
  for i = 1, math.min(k, #ranking) do got[i] = qrels[ranking[i]] or 0 end
  local ideal = {}
  for _, g in pairs(qrels) do if g > 0 then ideal[#ideal + 1] = g end end
  table.sort(ideal, function(a, b) return a > b end)
  local idcg = M.dcg(ideal, k, gain)
  if idcg == 0 then return nil end
  return M.dcg(got, k, gain) / idcg
end

function M.mrr(ranking, qrels, k)
  if nrel(qrels) == 0 then return nil end
  for i = 1, math.min(k, #ranking) do
    if (qrels[ranking[i]] or 0) >= 1 then return 1 / i end
  end
  return 0
end

function M.recall(ranking, qrels, k)
  local r = nrel(qrels)
  if r == 0 then return nil end
  local hit = 0
  for i = 1, math.min(k, #ranking) do
    if (qrels[ranking[i]] or 0) >= 1 then hit = hit + 1 end
  end
  return hit / r
end

function M.ap(ranking, qrels)
  local r = nrel(qrels)
  if r == 0 then return nil end
  local hit, s = 0, 0
  for i = 1, #ranking do
    if (qrels[ranking[i]] or 0) >= 1 then
      hit = hit + 1
      s = s + hit / i
    end
  end
  return s / r
end

-- Nearest-rank percentile (p in 0..100) of an array of numbers; nil when empty.
function M.percentile(values, p)
  local n = #values
  if n == 0 then return nil end
  local s = {}
  for i = 1, n do s[i] = values[i] end
  table.sort(s)
  local rank = math.ceil(p / 100 * n)
  if rank < 1 then rank = 1 end
  return s[rank]
end

return M
