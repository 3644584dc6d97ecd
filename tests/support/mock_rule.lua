-- The scoring rule of tests/mock/mock_openai.py, for specs that predict its answers:
-- share of the query's distinct words (\w+, lower-cased) found in the text, rounded to 6 places.
local M = {}

-- the set of words and the list of every occurrence
function M.words(s)
  local set, list = {}, {}
  for x in tostring(s):lower():gmatch("[%w_]+") do
    set[x] = true
    list[#list + 1] = x
  end
  return set, list
end

function M.share(q, doc)
  local qw, dw, n, hit = M.words(q), M.words(doc), 0, 0
  for x in pairs(qw) do
    n = n + 1
    if dw[x] then hit = hit + 1 end
  end
  return n > 0 and math.floor(hit / n * 1e6 + 0.5) / 1e6 or 0
end

function M.nwords(s)
  local _, list = M.words(s)
  return #list
end

-- The query and generated documents the LLM specs score against the mock: document i has
-- "doc<i>", then "red" when i % 2 == 0, "apple" when i % 3 == 0, "pie" when i % pie_every
-- == 0 (default 7), then `filler` when given.
M.QUERY = "red apple pie"

function M.make_docs(n, pie_every, filler)
  pie_every = pie_every or 7
  local docs = {}
  for i = 0, n - 1 do
    local w = { "doc" .. i }
    if i % 2 == 0 then w[#w + 1] = "red" end
    if i % 3 == 0 then w[#w + 1] = "apple" end
    if i % pie_every == 0 then w[#w + 1] = "pie" end
    if filler then w[#w + 1] = filler end
    docs[#docs + 1] = table.concat(w, " ")
  end
  return docs
end

return M
