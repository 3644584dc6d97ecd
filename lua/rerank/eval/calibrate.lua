-- `rerankd calibrate`: fits Platt parameters (p = sigmoid(a * raw + b)) for one model from a
-- judged query set (the same files as `rerankd eval`), so the model's relevance_score becomes
-- a probability of relevance and one min_score means the same across models (README "Scores").
-- Pairs: every document the model scored, labelled relevant when its grade >= --min-grade
-- (a document without a judgement is not relevant, as in trec_eval).
local json = require "rerank.json"
local score = require "rerank.score"

local M = {}

M.USAGE = [[
usage: rerankd calibrate -c FILE --data PATH --model NAME [options]
  -c, --config FILE    configuration (default ./config.yaml)
  --data PATH          JSON Lines file, or a BEIR directory (as for rerankd eval)
  --model NAME         the model to calibrate (its raw scores; not an alias or pipeline)
  --min-grade N        a judged grade >= N counts as relevant (default 1)
  --format yaml|json   output on stdout (default yaml: the model's score: block)
  --split NAME         BEIR qrels file qrels/NAME.tsv (default test)
  -h, --help           this help
]]

local function usage_error(msg)
  io.stderr:write("rerankd calibrate: ", msg, "\n", M.USAGE)
  return 2
end

function M.parse_args(args)
  local o, err = require("rerank.eval.cli").parse_flags(args, { ["-c"] = "config", ["--config"] = "config",
    ["--data"] = "data", ["--model"] = "model", ["--min-grade"] = "min_grade", ["--format"] = "format",
    ["--split"] = "split" }, { config = "config.yaml", min_grade = 1, format = "yaml" })
  if not o then return nil, err end
  local g = tonumber(o.min_grade)
  if not g or g ~= g or g == math.huge or g == -math.huge then return nil, "--min-grade must be a number" end
  o.min_grade = g
  if o.format ~= "yaml" and o.format ~= "json" then return nil, "--format must be yaml or json" end
  if not o.data then return nil, "--data is required" end
  if not o.model then return nil, "--model is required" end
  return o
end

-- The (raw score, label) pairs of one query's answer.
local function pairs_of(q, res, min_grade, out)
  for _, item in ipairs(res.results or {}) do
    local k = (tonumber(item.index) or -1) + 1
    local raw = tonumber(item.raw_score) or tonumber(item.relevance_score)
    if q.documents[k] ~= nil and raw then out[#out + 1] = { raw, (q.qrels[k] or 0) >= min_grade and 1 or 0 } end
  end
end

-- Mean log loss and Brier score of probabilities p(raw) against the labels.
local function quality(list, p)
  local ll, brier = 0, 0
  for _, pr in ipairs(list) do
    local x = math.min(math.max(p(pr[1]), 1e-12), 1 - 1e-12)
    ll = ll - (pr[2] == 1 and math.log(x) or math.log(1 - x))
    brier = brier + (x - pr[2]) ^ 2
  end
  return ll / #list, brier / #list
end

-- Runs the model over the set and fits; returns a report table or nil, err.
function M.fit(inst, queries, o)
  local list, failures = {}, 0
  for _, q in ipairs(queries) do
    local res = inst:rerank({ model = o.model, query = q.query, documents = q.documents, return_score = "all" })
    if res then pairs_of(q, res, o.min_grade, list) else failures = failures + 1 end
  end
  local fit, err = score.fit_platt(list)
  if not fit then return nil, err .. (" (%d scored documents from %d queries)"):format(#list, #queries) end
  local positives = 0
  for _, pr in ipairs(list) do positives = positives + pr[2] end
  local ll, brier = quality(list, function(x) return score.sigmoid(fit.a * x + fit.b) end)
  return { model = o.model, a = fit.a, b = fit.b, pairs = #list, relevant = positives, queries = #queries,
           failures = failures, log_loss = ll, brier = brier }
end

function M.render(r, format)
  if format == "json" then
    return json.encode({ model = r.model, score = { calibrate = { platt = { a = r.a, b = r.b } } },
      pairs = r.pairs, relevant = r.relevant, queries = r.queries, failures = r.failures,
      log_loss = r.log_loss, brier = r.brier }) .. "\n"
  end
  return ("# rerankd calibrate: model %s, %d scored documents (%d relevant) from %d queries%s\n"
    .. "# fitted: log loss %.4f, Brier %.4f; paste under the model's entry:\n"
    .. "score: { calibrate: { platt: { a: %.10g, b: %.10g } } }\n"):format(r.model, r.pairs, r.relevant,
    r.queries, r.failures > 0 and (", %d failed calls"):format(r.failures) or "", r.log_loss, r.brier, r.a, r.b)
end

function M.main(args)
  local o, queries = require("rerank.eval.cli").start("calibrate", M, args)
  if not o then return queries end
  local inst, ierr = require("rerank").new(o.config)
  if not inst then
    io.stderr:write("rerankd calibrate: ", tostring(ierr), "\n")
    return 1
  end
  local plain = false
  for _, m in ipairs(inst:models()) do
    if m.id == o.model and not m.alias_of and not m.pipeline then plain = true end
  end
  if not plain then return usage_error(("--model: %q is not a configured model"):format(o.model)) end
  local report, ferr = M.fit(inst, queries, o)
  if not report then
    io.stderr:write("rerankd calibrate: ", tostring(ferr), "\n")
    return 1
  end
  io.stdout:write(M.render(report, o.format))
  return 0
end

return M
