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

return M
