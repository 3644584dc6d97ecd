-- `rerankd eval`: ranking quality, latency, tokens and cost of configured models and
-- pipelines on a judged query set (README "Evaluate rerankers"). Measures:
-- lua/rerank/eval/measures.lua; data formats: lua/rerank/eval/data.lua.
local core = require "rerank.core"
local json = require "rerank.json"
local data = require "rerank.eval.data"
local measures = require "rerank.eval.measures"

local M = {}

M.USAGE = [[
usage: rerankd eval -c FILE --data PATH [options]
  -c, --config FILE      configuration (default ./config.yaml)
  --data PATH            JSON Lines file, or a BEIR directory (corpus.jsonl, queries.jsonl, qrels/)
  --models a,b,...       models, aliases or pipelines to evaluate (default: every model and pipeline)
  --k N                  cutoff for nDCG, MRR and Recall (default 10)
  --gain linear|exp      nDCG gain: the grade (trec_eval, ranx ndcg; default) or 2^grade - 1
  --concurrency N        calls in flight at once (default 1); latency is each call's own
  --format table|json|csv  output on stdout (default table)
  --split NAME           BEIR qrels file qrels/NAME.tsv (default test)
  --candidates FILE|all BEIR: candidates per query from a TREC run file, or the whole corpus
                         (default: the query's judged documents)
  --write-jsonl FILE     write the loaded set as JSON Lines and exit (the BEIR converter)
  -h, --help             this help
]]

local function usage_error(msg)
  io.stderr:write("rerankd eval: ", msg, "\n", M.USAGE)
  return 2
end

-- Options of a Lua subcommand (`--name value`, `--name=value`, `-h`): o with takes[name] set
-- for each | nil, "help" | nil, message. Shared with `rerankd calibrate`.
function M.parse_flags(args, takes, o)
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, val = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    if name == "-h" or name == "--help" then return nil, "help" end
    local key = takes[name]
    if not key then return nil, ("unknown option %q"):format(a) end
    if val == nil then
      i = i + 1
      val = args[i]
      if val == nil then return nil, name .. " needs a value" end
    end
    o[key] = val
    i = i + 1
  end
  return o
end

function M.parse_args(args)
  local o, err = M.parse_flags(args, { ["-c"] = "config", ["--config"] = "config", ["--data"] = "data",
    ["--models"] = "models", ["--k"] = "k", ["--gain"] = "gain", ["--concurrency"] = "concurrency",
    ["--format"] = "format", ["--split"] = "split", ["--candidates"] = "candidates", ["--write-jsonl"] = "write_jsonl" },
    { config = "config.yaml", k = 10, gain = "linear", concurrency = 1, format = "table" })
  if not o then return nil, err end
  for _, key in ipairs({ "k", "concurrency" }) do
    local n = tonumber(o[key])
    if not n or n < 1 or n ~= math.floor(n) or n > 100000 then
      return nil, ("--%s must be a positive integer"):format(key)
    end
    o[key] = n
  end
  if o.gain ~= "linear" and o.gain ~= "exp" then return nil, "--gain must be linear or exp" end
  if o.format ~= "table" and o.format ~= "json" and o.format ~= "csv" then
    return nil, "--format must be table, json or csv"
  end
  if not o.data then return nil, "--data is required" end
  return o
end

---------------------------------------------------------------------------------------------
-- Running calls concurrently on the blocking transport: each (query, model) call runs in a
-- coroutine; the transport parks it (yield) and the scheduler sends every parked call's
-- transfers together with one request_all, then resumes each with its answers.
-- Each call's own latency is kept apart from its round-mates': the time its own steps ran,
-- plus, per round, the time from the round's start until its own last transfer finished
-- (the transport stamps each answer with done_us); waiting for a slower call's transfers, or
-- for other calls' steps, is not counted.

local PARK = {}

local function eval_transport(base)
  local t = { name = "eval", sleep = base.sleep }
  function t.request(opts)
    local r = coroutine.yield(PARK, { opts }, 1)
    local x = r[1]
    if x.error then return nil, x.error end
    return x
  end
  function t.request_all(list, n) return coroutine.yield(PARK, list, n) end
  return t
end

-- tasks: array of functions; on_done(i, own_us, ...) with each one's own latency (µs) and
-- its returns (or false, err). now: the clock (core.now_us).
function M.schedule(tasks, concurrency, base, on_done, now)
  now = now or core.now_us
  local active, nexti = {}, 1
  local function pack(...) return { n = select("#", ...), ... } end
  local function step(slot, ...)
    local co = slot.co
    local t0 = now()
    local res = pack(coroutine.resume(co, ...))
    slot.own = slot.own + (now() - t0)
    if coroutine.status(co) == "dead" then
      slot.done = true
      if res[1] then on_done(slot.i, slot.own, unpack(res, 2, res.n))
      else on_done(slot.i, slot.own, false, tostring(res[2])) end
    elseif res[2] == PARK then
      slot.list, slot.n = res[3], res[4]
    else
      slot.list = nil -- a bare yield: resumed next round
    end
  end
  while true do
    while #active < concurrency and nexti <= #tasks do
      local slot = { i = nexti, co = coroutine.create(tasks[nexti]), own = 0 }
      nexti = nexti + 1
      step(slot)
      if not slot.done then active[#active + 1] = slot end
    end
    if #active == 0 then break end
    local flat, width = {}, 0
    for _, s in ipairs(active) do
      if s.list then
        s.from = #flat + 1
        for _, o in ipairs(s.list) do flat[#flat + 1] = o end
        width = width + math.min(#s.list, tonumber(s.n) or #s.list)
      end
    end
    local r0 = now()
    local answers = #flat > 0 and base.request_all(flat, math.max(1, width)) or {}
    local r1 = now()
    local still = {}
    for _, s in ipairs(active) do
      local mine
      if s.list then
        mine = {}
        local last = r0
        for j = 1, #s.list do
          local a = answers[s.from + j - 1]
          mine[j] = a
          local at = type(a) == "table" and tonumber(a.done_us) or r1
          if at <= 0 or at > r1 then at = r1 end -- never finished (not started): the round's end
          if at > last then last = at end
        end
        s.own = s.own + (last - r0)
      end
      step(s, mine)
      if not s.done then still[#still + 1] = s end
    end
    active = still
  end
end

---------------------------------------------------------------------------------------------

local function isatty_stderr()
  local ok, ffi = pcall(require, "ffi")
  if not ok then return false end
  pcall(ffi.cdef, "int isatty(int fd);")
  local ok2, r = pcall(function() return ffi.C.isatty(2) end)
  return ok2 and r == 1
end

-- progress(queries, calls)(queries_done, calls_done, final): a bar on a terminal only
local function progress(nq, total)
  if not isatty_stderr() then return function() end end
  local t0, last = core.now_us(), 0
  return function(qdone, done, final)
    local now = core.now_us()
    if not final and now - last < 100000 then return end
    last = now
    local secs = (now - t0) / 1e6
    local rate = secs > 0 and qdone / secs or 0
    local crate = secs > 0 and done / secs or 0
    local eta = crate > 0 and (total - done) / crate or 0
    local width = 30
    local fill = math.floor(width * done / math.max(total, 1))
    io.stderr:write(("\r[%s%s] %d/%d queries (%d/%d calls)  %.1f queries/s  ETA %ds "):format(("#"):rep(fill),
      ("."):rep(width - fill), qdone, nq, done, total, rate, math.ceil(eta)))
    if final then io.stderr:write("\n") end
  end
end

local function ranking_of(q, res)
  local r = {}
  for i, item in ipairs(res.results or {}) do
    local k = item.id ~= nil and q.ids[tostring(item.id)] or (tonumber(item.index) or -1) + 1
    r[i] = k
  end
  return r
end

function M.evaluate(inst, queries, names, o)
  local pipelines = {}
  for _, p in ipairs(inst.cfg.pipelines or {}) do pipelines[p.name] = true end
  local stats = {}
  for mi, name in ipairs(names) do
    stats[mi] = { name = name, lat = {}, tokens = 0, cost = 0, ok = 0, failures = 0, per_query = {} }
  end
  local tasks, meta = {}, {}
  for qi, q in ipairs(queries) do
    for mi, name in ipairs(names) do
      local req = { model = name, query = q.query }
      if q.lists and pipelines[name] then req.lists = q.lists else req.documents = q.documents end
      tasks[#tasks + 1] = function() return inst:rerank(req) end
      meta[#tasks] = { qi = qi, mi = mi }
    end
  end
  local show, done, qdone, per_q = progress(#queries, #tasks), 0, 0, {}
  local base = inst.transport
  if base then inst.transport = eval_transport(base) end
  local function on_done(i, us, res, err)
    local m, st = meta[i], stats[meta[i].mi]
    local q = queries[m.qi]
    done = done + 1
    per_q[m.qi] = (per_q[m.qi] or 0) + 1
    if per_q[m.qi] == #names then qdone = qdone + 1 end
    show(qdone, done)
    if not res then
      st.failures = st.failures + 1
      st.first_error = st.first_error or (type(err) == "table" and (err.message or err.type) or tostring(err))
      st.per_query[m.qi] = false
      return
    end
    st.ok = st.ok + 1
    st.lat[#st.lat + 1] = us / 1000
    local u = res.usage or {}
    st.tokens = st.tokens + (tonumber(u.total_tokens) or tonumber(u.prompt_tokens) or 0)
    st.cost = st.cost + (tonumber(res.cost) or tonumber(u.cost) or 0)
    st.per_query[m.qi] = ranking_of(q, res)
  end
  M.schedule(tasks, o.concurrency, base or {}, on_done)
  show(qdone, done, true)
  return M.summarise(queries, stats, o)
end

-- Means over the judged queries (a failed call scores 0, like trec_eval -c), pairwise wins.
function M.summarise(queries, stats, o)
  local k, gain = o.k, o.gain
  local judged, unjudged = {}, 0
  for qi, q in ipairs(queries) do
    if measures.relevant_count(q.qrels) > 0 then judged[#judged + 1] = qi else unjudged = unjudged + 1 end
  end
  local nd = {}
  for mi, st in ipairs(stats) do
    local s = { ndcg = 0, mrr = 0, recall = 0, map = 0 }
    nd[mi] = {}
    for _, qi in ipairs(judged) do
      local r, qr = st.per_query[qi], queries[qi].qrels
      local v = r and measures.ndcg(r, qr, k, gain) or 0
      nd[mi][qi] = v
      s.ndcg = s.ndcg + v
      if r then
        s.mrr = s.mrr + measures.mrr(r, qr, k)
        s.recall = s.recall + measures.recall(r, qr, k)
        s.map = s.map + measures.ap(r, qr)
      end
    end
    local n = math.max(#judged, 1)
    st.ndcg, st.mrr, st.recall, st.map = s.ndcg / n, s.mrr / n, s.recall / n, s.map / n
    st.p50, st.p95 = measures.percentile(st.lat, 50), measures.percentile(st.lat, 95)
    st.tokens_per_1k = st.ok > 0 and st.tokens / st.ok * 1000 or nil
    st.cost_per_1k = st.ok > 0 and st.cost / st.ok * 1000 or nil
  end
  for mi, st in ipairs(stats) do
    st.wins = {}
    for mj, other in ipairs(stats) do
      if mj ~= mi then
        local w = 0
        for _, qi in ipairs(judged) do
          if nd[mi][qi] > nd[mj][qi] then w = w + 1 end
        end
        st.wins[other.name] = #judged > 0 and w / #judged or 0
      end
    end
  end
  return { queries = #queries, judged = #judged, unjudged = unjudged, k = k, gain = gain, models = stats }
end

---------------------------------------------------------------------------------------------
-- output

local function f4(x) return x and ("%.4f"):format(x) or "-" end
local function f2(x) return x and ("%.2f"):format(x) or "-" end
local function cost(x) return x and ("%.4f"):format(x) or "-" end

local function columns(s)
  return {
    ["nDCG@" .. s.k] = function(m) return f4(m.ndcg) end,
    ["MRR@" .. s.k] = function(m) return f4(m.mrr) end,
    ["R@" .. s.k] = function(m) return f4(m.recall) end,
    MAP = function(m) return f4(m.map) end,
    ["p50 ms"] = function(m) return f2(m.p50) end,
    ["p95 ms"] = function(m) return f2(m.p95) end,
    ["tokens/1k q"] = function(m) return m.tokens_per_1k and ("%d"):format(math.floor(m.tokens_per_1k + 0.5)) or "-" end,
    ["USD/1k q"] = function(m) return cost(m.cost_per_1k) end,
    failed = function(m) return tostring(m.failures) end,
  }
end

local function pad(cells, widths)
  local out = {}
  for i, c in ipairs(cells) do
    out[i] = i == 1 and c .. (" "):rep(widths[i] - #c) or (" "):rep(widths[i] - #c) .. c
  end
  return (table.concat(out, "  "):gsub("%s+$", ""))
end

local function grid(rows)
  local widths = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do widths[i] = math.max(widths[i] or 0, #c) end
  end
  local out = {}
  for i, r in ipairs(rows) do out[i] = pad(r, widths) end
  return table.concat(out, "\n")
end

function M.format_table(s, source)
  local cols = columns(s)
  local order = { "nDCG@" .. s.k, "MRR@" .. s.k, "R@" .. s.k, "MAP", "p50 ms", "p95 ms", "tokens/1k q", "USD/1k q", "failed" }
  local head = { "model" }
  for _, c in ipairs(order) do head[#head + 1] = c end
  local rows = { head }
  for _, m in ipairs(s.models) do
    local r = { m.name }
    for _, c in ipairs(order) do r[#r + 1] = cols[c](m) end
    rows[#rows + 1] = r
  end
  local out = { ("%s: %d queries (%d judged), k=%d, gain=%s"):format(source, s.queries, s.judged, s.k, s.gain),
    "", grid(rows) }
  if #s.models > 1 then
    local wrows = { { "wins" } }
    for _, m in ipairs(s.models) do wrows[1][#wrows[1] + 1] = m.name end
    for _, m in ipairs(s.models) do
      local r = { m.name }
      for _, o in ipairs(s.models) do r[#r + 1] = o == m and "-" or ("%.2f"):format(m.wins[o.name]) end
      wrows[#wrows + 1] = r
    end
    out[#out + 1] = ""
    out[#out + 1] = ("share of queries where the row's nDCG@%d beats the column's:"):format(s.k)
    out[#out + 1] = grid(wrows)
  end
  return table.concat(out, "\n") .. "\n"
end

local function num(x)
  if x == nil then return "null" end
  return json.number(x)
end

function M.format_json(s)
  local models = {}
  for i, m in ipairs(s.models) do
    local wins = {}
    for _, o in ipairs(s.models) do
      if o ~= m then wins[#wins + 1] = json.string(o.name) .. ":" .. num(m.wins[o.name]) end
    end
    models[i] = ('{"name":%s,"ndcg":%s,"mrr":%s,"recall":%s,"map":%s,"latency_ms":{"p50":%s,"p95":%s},'
      .. '"tokens_per_1k_queries":%s,"cost_per_1k_queries_usd":%s,"calls":%d,"failures":%d,"wins":{%s}%s}'):format(
      json.string(m.name), num(m.ndcg), num(m.mrr), num(m.recall), num(m.map), num(m.p50), num(m.p95),
      num(m.tokens_per_1k), num(m.cost_per_1k), m.ok + m.failures, m.failures, table.concat(wins, ","),
      m.first_error and ',"first_error":' .. json.string(m.first_error) or "")
  end
  return ('{"queries":%d,"judged":%d,"k":%d,"gain":%s,"models":[%s]}\n'):format(s.queries, s.judged, s.k,
    json.string(s.gain), table.concat(models, ","))
end

local function csv_cell(v)
  v = tostring(v)
  if v:find('[,"\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

function M.format_csv(s)
  local head = { "model", "ndcg@" .. s.k, "mrr@" .. s.k, "recall@" .. s.k, "map", "p50_ms", "p95_ms",
    "tokens_per_1k_queries", "cost_per_1k_queries_usd", "calls", "failures" }
  for _, m in ipairs(s.models) do head[#head + 1] = "wins_vs_" .. m.name end
  local rows = { table.concat(head, ",") }
  local function v(x) return x == nil and "" or json.number(x) end
  for _, m in ipairs(s.models) do
    local r = { csv_cell(m.name), v(m.ndcg), v(m.mrr), v(m.recall), v(m.map), v(m.p50), v(m.p95),
      v(m.tokens_per_1k), v(m.cost_per_1k), tostring(m.ok + m.failures), tostring(m.failures) }
    for _, o in ipairs(s.models) do r[#r + 1] = o == m and "" or v(m.wins[o.name]) end
    rows[#rows + 1] = table.concat(r, ",")
  end
  return table.concat(rows, "\n") .. "\n"
end

---------------------------------------------------------------------------------------------

-- The start every data-set subcommand shares: its options (tool.parse_args), --help, usage
-- errors (exit 2), then the judged set: o, queries | nil, exit status.
function M.start(name, tool, args)
  local o, err = tool.parse_args(args)
  if not o then
    if err == "help" then
      io.stdout:write(tool.USAGE)
      return nil, 0
    end
    io.stderr:write("rerankd ", name, ": ", err, "\n", tool.USAGE)
    return nil, 2
  end
  local queries, derr = data.load(o.data, { split = o.split, candidates = o.candidates })
  if not queries then
    io.stderr:write("rerankd ", name, ": ", tostring(derr), "\n")
    return nil, 1
  end
  return o, queries
end

function M.main(args)
  local o, queries = M.start("eval", M, args)
  if not o then return queries end
  if o.write_jsonl then
    local f, ferr = io.open(o.write_jsonl, "wb")
    if not f then
      io.stderr:write("rerankd eval: ", tostring(ferr), "\n")
      return 1
    end
    f:write(data.to_jsonl(queries))
    f:close()
    io.stderr:write(("rerankd eval: wrote %d queries to %s\n"):format(#queries, o.write_jsonl))
    return 0
  end
  local inst, ierr = require("rerank").new(o.config)
  if not inst then
    io.stderr:write("rerankd eval: ", tostring(ierr), "\n")
    return 1
  end
  local known, all = {}, {}
  for _, m in ipairs(inst:models()) do
    known[m.id] = true
    if not m.alias_of then all[#all + 1] = m.id end
  end
  local names = {}
  if o.models then
    for n in o.models:gmatch("[^,]+") do
      n = n:match("^%s*(.-)%s*$")
      if not known[n] then
        table.sort(all)
        return usage_error(("--models: unknown model or pipeline %q (configured: %s)"):format(n, table.concat(all, ", ")))
      end
      names[#names + 1] = n
    end
  else
    names = all
  end
  if #names == 0 then return usage_error("--models: nothing to evaluate") end
  local summary = M.evaluate(inst, queries, names, o)
  for _, m in ipairs(summary.models) do
    if m.failures > 0 then
      io.stderr:write(("rerankd eval: %s: %d of %d calls failed; first: %s\n"):format(m.name, m.failures,
        m.ok + m.failures, m.first_error))
    end
  end
  local out
  if o.format == "json" then out = M.format_json(summary)
  elseif o.format == "csv" then out = M.format_csv(summary)
  else out = M.format_table(summary, o.data) end
  io.stdout:write(out)
  return 0
end

return M
