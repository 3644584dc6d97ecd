-- Unit-test helpers for the process environment and scratch files.
--   files.setenv(name, value)   sets (value nil: unsets) an environment variable, seen by
--                               os.getenv and the C core alike (setenv(3) through the FFI)
--   files.write(path, text)     writes a file, making its directory first; returns path
local ffi = require "ffi"
local paths = require "rerank.config.paths"

pcall(ffi.cdef, [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]])

local M = {}

function M.setenv(k, v)
  if v == nil then ffi.C.unsetenv(k) else ffi.C.setenv(k, v, 1) end
end

function M.write(path, text)
  os.execute("mkdir -p '" .. paths.dirname(path) .. "'")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

return M
