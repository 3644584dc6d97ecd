-- Path probing for providers that declare `probe_paths` (cohere_compatible) and a model
-- without an explicit `path`: each path is tried in order while the server answers 404 or
-- 405; the first path that gets any other answer is remembered per model and base URL (per
-- worker) and tried first next time. A remembered path that starts answering 404/405 is
-- forgotten and the others are tried again. Everything else (error mapping, parse) is
-- upstream.call_one's.
--   probe.applies(model, p) -> bool
--   probe.call(transport, model, p, req, spec, report) -> parse's result | nil, err
--   probe.resolve(model, p, spec) -> spec, its url on the remembered path (for batched calls)
local U = require "rerank.provider_util"

local M = { winners = {} }

function M.applies(model, p)
  return type(p.probe_paths) == "table" and (model.path == nil or model.path == "")
end

local function key_of(model, base) return tostring(model.name) .. "\0" .. base end

function M.resolve(model, p, spec)
  local base = U.base_url(model, p)
  local path = M.winners[key_of(model, base)]
  if path then spec.url = U.join(base, path) end
  return spec
end

function M.call(transport, model, p, req, spec, report)
  local upstream = require "rerank.engine.upstream"
  local base = U.base_url(model, p)
  local key = key_of(model, base)
  local winners = M.winners
  local first = winners[key]
  local order = { first }
  for _, path in ipairs(p.probe_paths) do
    if path ~= first then order[#order + 1] = path end
  end
  local proxy = setmetatable({
    request = function(opts)
      local res, err
      for _, path in ipairs(order) do
        opts.url = U.join(base, path)
        res, err = transport.request(opts)
        if not res then return nil, err end
        if res.status ~= 404 and res.status ~= 405 then
          winners[key] = path
          return res
        end
        if winners[key] == path then winners[key] = nil end
      end
      return res, err
    end,
  }, { __index = transport })
  return upstream.call_one(proxy, model, p, req, spec, report)
end

return M
