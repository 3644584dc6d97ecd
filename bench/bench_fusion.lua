-- Fusion micro-benchmark: RRF and linear (min_max) over 3 lists × 1,000 and 3 × 100,000
-- items, in LuaJIT (the shipped lua/rerank/fusion code) and in C (bench/bench_fusion.c, the
-- same loops over the same prepared arrays). Prints Markdown table rows in bench/run.sh's
-- columns: | benchmark | rerankd | baseline (same run) | baseline | ratio |
--
--   luajit bench/bench_fusion.lua [WORKDIR]     (WORKDIR default build/bench, relative to the
--                                                working directory; needs cc for the C rows)
-- Env: BENCH_FUSION_SIZES="1000 100000", BENCH_FUSION_REPS (runs per row, median kept).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = here .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/?.so;" .. package.cpath

local ffi = require "ffi"
local fuse = require "rerank.fuse"

local workdir = arg and arg[1] or "build/bench"
os.execute("mkdir -p '" .. workdir .. "'")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bf_timespec;
int clock_gettime(int clk, bf_timespec *ts);
void bf_rrf(double *F, int n_docs, int n_lists, const int *const *docs, const int *lens,
            const double *w, double k, int rank_base);
void bf_linear_minmax(double *F, int n_docs, int n_lists, const int *const *docs, const int *lens,
                      const double *const *sims, const double *w);
]]

local ts = ffi.new("bf_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

-- The C kernels, built here (cc -O2) so the comparison uses the same compiler flags as core/.
local C
do
  local so = workdir .. "/bench_fusion.so"
  local cc = os.getenv("CC") or "cc"
  local ok = os.execute(("%s -std=c11 -O2 -shared -fPIC -o '%s' '%s/bench/bench_fusion.c' 2>/dev/null"):format(cc, so, root))
  if ok == 0 or ok == true then
    local lok, lib = pcall(ffi.load, so)
    if lok then C = lib end
  end
  if not C then io.stderr:write("bench_fusion: cc failed: C rows skipped\n") end
end

-- Deterministic data: 3 lists of n items; ids drawn from a universe of 1.5 n ("doc<k>"),
-- so lists overlap partly; scores descending; the first list is a distance list.
local seed = 20261123 -- Park-Miller minimal standard (products stay below 2^53: exact in doubles)
local function rnd()
  seed = (seed * 16807) % 2147483647
  return seed / 2147483647
end

local function make_lists(n)
  local lists = {}
  local universe = math.floor(n * 1.5)
  for i = 1, 3 do
    local used, items = {}, {}
    local s = 1.0
    while #items < n do
      local k = math.floor(rnd() * universe) + 1
      if not used[k] then
        used[k] = true
        s = s - rnd() / n
        items[#items + 1] = { id = "doc" .. k, score = i == 1 and (1 - s) or s * 10 }
      end
    end
    lists[i] = { name = "l" .. i, kind = i == 1 and "distance" or "similarity", items = items }
  end
  return lists
end

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local function time(reps, fn)
  local ts_ = {}
  fn() -- warm-up (JIT traces)
  for r = 1, reps do
    local t0 = now_us()
    fn()
    ts_[r] = now_us() - t0
  end
  return median(ts_)
end

local function fmt(v)
  if v == nil then return "n/a" end
  if v >= 100 then return ("%.0f"):format(v) end
  return ("%.1f"):format(v)
end

local sizes = {}
for s in (os.getenv("BENCH_FUSION_SIZES") or "1000 100000"):gmatch("%d+") do sizes[#sizes + 1] = tonumber(s) end

local rows = {}
local function row(name, lua_us, base_name, base_us, ratio)
  rows[#rows + 1] = ("| %s | %s µs | %s | %s | %s |"):format(name, fmt(lua_us), base_name or "",
    base_us and (fmt(base_us) .. " µs") or "", ratio or "")
end

for _, n in ipairs(sizes) do
  local reps = tonumber(os.getenv("BENCH_FUSION_REPS")) or (n >= 100000 and 15 or 201)
  local lists = make_lists(n)
  local label = ("3 lists × %s items"):format(n >= 1000 and (tostring(n):reverse():gsub("(%d%d%d)", "%1,"):reverse()
    :gsub("^,", "")) or tostring(n))
  local P = assert(fuse.check_lists(lists))
  local methods = { rrf = fuse.builtin("rrf"), linear = fuse.builtin("linear") }
  local params = {
    rrf = assert(fuse.check_params(methods.rrf, {})),
    linear = assert(fuse.check_params(methods.linear, { normalize = "min_max" })),
  }
  -- C copies of the prepared arrays
  local cdocs, clens, csims, cw
  if C then
    local keep = {}
    P.c_arrays = keep -- anchors the FFI arrays against the GC
    cdocs = ffi.new("const int *[3]")
    csims = ffi.new("const double *[3]")
    clens = ffi.new("int[3]")
    cw = ffi.new("double[3]", 1, 1, 1)
    assert(fuse.compute(P, methods.linear, params.linear)) -- fills P[i].sims
    for i = 1, 3 do
      local l = P[i]
      local d = ffi.new("int[?]", l.n)
      local s = ffi.new("double[?]", l.n)
      for j = 1, l.n do d[j - 1] = l.docs[j]; s[j - 1] = l.sims[j] end
      keep[#keep + 1] = d
      keep[#keep + 1] = s
      cdocs[i - 1], csims[i - 1], clens[i - 1] = d, s, l.n
    end
  end
  local F = C and ffi.new("double[?]", P.n_docs + 1)
  for _, m in ipairs({ "rrf", "linear" }) do
    local method, p = methods[m], params[m]
    local lua_kernel = time(reps, function() fuse.compute(P, method, p) end)
    local c_kernel
    if C then
      if m == "rrf" then
        c_kernel = time(reps, function() C.bf_rrf(F, P.n_docs, 3, cdocs, clens, cw, 60, 1) end)
      else
        c_kernel = time(reps, function() C.bf_linear_minmax(F, P.n_docs, 3, cdocs, clens, csims, cw) end)
      end
      -- same numbers from both
      local FL = fuse.compute(P, method, p)
      for d = 1, P.n_docs do
        assert(math.abs(FL[d] - F[d]) <= 1e-12 * math.max(1, math.abs(FL[d])), "C and Lua disagree")
      end
    end
    local mname = m == "rrf" and "RRF (k 60)" or "linear (min_max)"
    row(("fusion %s kernel, %s, LuaJIT"):format(mname, label), lua_kernel,
      "same loop in C (cc -O2), same arrays", c_kernel,
      c_kernel and ("Lua %.1f× C"):format(lua_kernel / c_kernel) or "n/a")
    -- the whole library call (rerank.fuse): check + index ids, fuse, order, result tables
    local reps3 = math.max(3, math.floor(reps / 3))
    local top10 = time(reps3, function() assert(fuse.run(lists, { method = m, top_n = 10 })) end)
    local all = time(reps3, function() assert(fuse.run(lists, { method = m })) end)
    local check = time(reps3, function() fuse.check_lists(lists) end)
    local F2 = fuse.compute(P, method, p)
    local order = time(reps3, function() fuse.order(P, F2) end)
    row(("rerank.fuse %s end to end, %s, top_n 10"):format(mname, label), top10,
      ("all %s results in order"):format(P.n_docs), all,
      ("check + id index %s µs; full order %s µs"):format(fmt(check), fmt(order)))
  end
end

for _, r in ipairs(rows) do print(r) end
