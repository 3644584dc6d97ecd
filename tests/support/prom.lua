-- A strict parser of the Prometheus text exposition format (version 0.0.4), for tests.
--   prom.parse(text) -> families | nil, "line N: what is wrong"
--   families[name] = { type =, help =, samples = { { name =, labels = {k = v}, value = n } } }
-- Strict on purpose: every line is HELP, TYPE or a sample (no blank lines, no other comments);
-- a family's HELP/TYPE come once and before its samples; a family's samples are contiguous;
-- names and label names are valid; label values use only the \\ \" \n escapes; no duplicate
-- sample; counters end in _total and are >= 0; histograms have _bucket samples with an `le`
-- label, ascending and cumulative, ending with le="+Inf" equal to _count, plus _sum and _count;
-- the text ends with a newline.
local M = {}

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"
local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

local function parse_value(s)
  if s == "+Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  if s == "NaN" then return 0 / 0 end
  if not s:match("^[-+]?%d*%.?%d+[eE]?[-+]?%d*$") and not s:match("^[-+]?%d+%.?%d*[eE][-+]?%d+$") then return nil end
  return tonumber(s)
end

-- labels text after "{": returns labels, canonical key, rest of the line after "}"
local function parse_labels(s, lineno)
  local labels, names = {}, {}
  local i = 1
  if s:sub(1, 1) == "}" then return labels, "", s:sub(2) end
  while true do
    local name, j = s:match("^([^=]*)=\"()", i)
    if not name then return nil, ("line %d: bad label syntax"):format(lineno) end
    if not name:match(LABEL) then return nil, ("line %d: invalid label name %q"):format(lineno, name) end
    if labels[name] then return nil, ("line %d: duplicate label %q"):format(lineno, name) end
    local buf = {}
    local k = j
    while true do
      local c = s:sub(k, k)
      if c == "" then return nil, ("line %d: unterminated label value"):format(lineno) end
      if c == "\\" then
        local e = s:sub(k + 1, k + 1)
        if e == "\\" then buf[#buf + 1] = "\\"
        elseif e == '"' then buf[#buf + 1] = '"'
        elseif e == "n" then buf[#buf + 1] = "\n"
        else return nil, ("line %d: invalid escape \\%s"):format(lineno, e) end
        k = k + 2
      elseif c == '"' then
        k = k + 1
        break
      elseif c == "\n" then
        return nil, ("line %d: raw newline in a label value"):format(lineno)
      else
        buf[#buf + 1] = c
        k = k + 1
      end
    end
    labels[name] = table.concat(buf)
    names[#names + 1] = name
    local sep = s:sub(k, k)
    if sep == "}" then
      table.sort(names)
      local key = {}
      for _, n in ipairs(names) do key[#key + 1] = n .. "=" .. labels[n] end
      return labels, table.concat(key, "\0"), s:sub(k + 1)
    end
    if sep ~= "," then return nil, ("line %d: expected , or } after a label"):format(lineno) end
    i = k + 1
  end
end

local function family_of(name, families)
  if families[name] then return name end
  for _, suffix in ipairs({ "_bucket", "_sum", "_count" }) do
    local base = name:sub(1, #name - #suffix)
    if name:sub(-#suffix) == suffix and families[base] and families[base].type == "histogram" then return base end
  end
  return nil
end

function M.parse(text)
  if type(text) ~= "string" then return nil, "not a string" end
  if text ~= "" and text:sub(-1) ~= "\n" then return nil, "the text does not end with a newline" end
  local families, order, done = {}, {}, {}
  local current
  local lineno = 0
  local seen = {}
  for line in text:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if line == "" then return nil, ("line %d: empty line"):format(lineno) end
    local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
    if line:sub(1, 1) == "#" then
      if kind ~= "HELP" and kind ~= "TYPE" then return nil, ("line %d: unexpected comment"):format(lineno) end
      if not name:match(NAME) then return nil, ("line %d: invalid metric name %q"):format(lineno, name) end
      if done[name] then return nil, ("line %d: %s for %s after its samples"):format(lineno, kind, name) end
      local f = families[name]
      if not f then
        f = { samples = {} }
        families[name] = f
        order[#order + 1] = name
      end
      if current and current ~= name then done[current] = true end
      current = name
      if kind == "HELP" then
        if f.help then return nil, ("line %d: second HELP for %s"):format(lineno, name) end
        if rest:gsub("\\\\", ""):gsub("\\n", ""):find("\\", 1, true) then
          return nil, ("line %d: invalid escape in HELP"):format(lineno)
        end
        f.help = rest
      else
        if f.type then return nil, ("line %d: second TYPE for %s"):format(lineno, name) end
        if #f.samples > 0 then return nil, ("line %d: TYPE after samples of %s"):format(lineno, name) end
        if not TYPES[rest] then return nil, ("line %d: unknown type %q"):format(lineno, rest) end
        f.type = rest
      end
    else
      local sname, after = line:match("^([^%s{]+)(.*)$")
      if not sname or not sname:match(NAME) then return nil, ("line %d: invalid sample name"):format(lineno) end
      local labels, key = {}, ""
      if after:sub(1, 1) == "{" then
        local l, k, r = parse_labels(after:sub(2), lineno)
        if not l then return nil, k end
        labels, key, after = l, k, r
      end
      local v, ts = after:match("^ (%S+) ?(%S*)$")
      if not v then return nil, ("line %d: expected ' value'"):format(lineno) end
      if ts ~= "" and not ts:match("^%-?%d+$") then return nil, ("line %d: bad timestamp"):format(lineno) end
      local value = parse_value(v)
      if value == nil then return nil, ("line %d: invalid value %q"):format(lineno, v) end
      local fname = family_of(sname, families)
      if not fname or not families[fname].type then
        return nil, ("line %d: sample %s without a TYPE"):format(lineno, sname)
      end
      if done[fname] then return nil, ("line %d: samples of %s are not contiguous"):format(lineno, fname) end
      if current ~= fname then
        if current then done[current] = true end
        current = fname
      end
      local id = sname .. "\1" .. key
      if seen[id] then return nil, ("line %d: duplicate sample %s"):format(lineno, sname) end
      seen[id] = true
      local f = families[fname]
      if f.type == "counter" and not (value >= 0) then -- luacheck: ignore 581 (NaN too)
        return nil, ("line %d: counter %s is negative"):format(lineno, sname)
      end
      if f.type == "histogram" and sname == fname then
        return nil, ("line %d: histogram sample without _bucket/_sum/_count"):format(lineno)
      end
      f.samples[#f.samples + 1] = { name = sname, labels = labels, value = value, key = key }
    end
  end
  -- per-family checks
  for _, name in ipairs(order) do
    local f = families[name]
    if not f.type then return nil, name .. ": HELP without TYPE" end
    if f.type == "counter" and not name:match("_total$") then return nil, name .. ": a counter must end in _total" end
    if f.type == "histogram" then
      local groups = {}
      for _, s in ipairs(f.samples) do
        local l = {}
        for k, v in pairs(s.labels) do if k ~= "le" then l[#l + 1] = k .. "=" .. v end end
        table.sort(l)
        local g = table.concat(l, "\0")
        groups[g] = groups[g] or { buckets = {} }
        local grp = groups[g]
        if s.name == name .. "_bucket" then
          if not s.labels.le then return nil, name .. ": _bucket without le" end
          local le = parse_value(s.labels.le)
          if le == nil then return nil, name .. ": invalid le " .. s.labels.le end
          grp.buckets[#grp.buckets + 1] = { le = le, v = s.value }
        elseif s.name == name .. "_sum" then grp.sum = s.value
        elseif s.name == name .. "_count" then grp.count = s.value end
      end
      for g, grp in pairs(groups) do
        local b = grp.buckets
        if #b == 0 or b[#b].le ~= math.huge then return nil, name .. ": no le=\"+Inf\" bucket for {" .. g .. "}" end
        for i = 2, #b do
          if not (b[i].le > b[i - 1].le) then -- luacheck: ignore 581 (NaN too)
            return nil, name .. ": buckets not in ascending le order"
          end
          if b[i].v < b[i - 1].v then return nil, name .. ": buckets not cumulative" end
        end
        if grp.count == nil or grp.sum == nil then return nil, name .. ": missing _sum or _count" end
        if grp.count ~= b[#b].v then return nil, name .. ": +Inf bucket differs from _count" end
      end
    end
  end
  return families
end

-- The value of one sample: family name, sample name (default the family's), labels subset.
function M.value(families, fam, labels, sample)
  local f = families[fam]
  if not f then return nil end
  for _, s in ipairs(f.samples) do
    if s.name == (sample or fam) then
      local ok = true
      for k, v in pairs(labels or {}) do
        if s.labels[k] ~= v then ok = false break end
      end
      if ok then return s.value end
    end
  end
  return nil
end

return M
