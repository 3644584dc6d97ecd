-- Small path helpers (POSIX paths) and the location of rerankd's own files.
--   paths.root()          directory holding lua/ and providers/ (RERANKD_HOME, else derived
--                         from this file: <root>/lua/rerank/config/paths.lua, or the installed
--                         PREFIX/share/lua/5.1/rerank/config/paths.lua -> PREFIX/share/rerankd;
--                         an installed rerank/site.lua returning { root = DIR } wins)
--   paths.join(a, b, ...) joins with "/"; an absolute later part replaces what came before
--   paths.is_abs(p), paths.dirname(p), paths.basename(p), paths.normalize(p)
--   paths.abs(p, base)    absolute, normalised path of p relative to base (default: cwd)
--   paths.cwd()           the working directory
--   paths.exists(file)    true when the file can be opened for reading
--   paths.load_table(file, what, chunkname) runs a Lua file that must return a table
--                         (an operator's file, not is_builtin, with LuaJIT's compiler off)
--   paths.is_builtin(file) true under rerankd's own lua/ or providers/
--   paths.lua_names(dirs) sorted distinct names of the *.lua files in dirs (without .lua)
local M = {}

local jit_off = rawget(_G, "jit") and jit.off

function M.is_abs(p)
  return type(p) == "string" and p:sub(1, 1) == "/"
end

function M.join(a, ...)
  local out = a
  for i = 1, select("#", ...) do
    local b = select(i, ...)
    if M.is_abs(b) or out == nil or out == "" then
      out = b
    elseif b ~= "" then
      out = (out:sub(-1) == "/" and out or out .. "/") .. b
    end
  end
  return out
end

-- Lexically removes "." and "x/.." segments and duplicate slashes.
function M.normalize(p)
  local abs = M.is_abs(p)
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      if #parts > 0 and parts[#parts] ~= ".." then
        parts[#parts] = nil
      elseif not abs then
        parts[#parts + 1] = ".."
      end
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  local s = table.concat(parts, "/")
  if abs then return "/" .. s end
  return s == "" and "." or s
end

function M.dirname(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

function M.basename(p)
  return (p:gsub("/+$", ""):match("[^/]*$"))
end

-- rerank.core when loaded (its stat and bounded reads), else nil: plain Lua falls back to io
local function core_mod()
  local ok, core = pcall(require, "rerank.core")
  return ok and type(core) == "table" and core.read_file and core or nil
end

-- Whether something other than a directory is at file (stat only: opening a FIFO blocks).
function M.exists(file)
  local core = core_mod()
  if core then
    local kind = core.file_kind(file)
    return kind ~= nil and kind ~= "directory"
  end
  local f = io.open(file, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

-- The whole text of a regular file of bounded size (core.read_file: FIFOs, devices and
-- files over 4 MB are refused at once) | nil, err.
function M.read(file)
  local core = core_mod()
  if core then return core.read_file(file) end
  local f, err = io.open(file, "rb")
  if not f then return nil, err end
  local src = f:read("*a")
  f:close()
  return src
end

-- Runs the Lua file `file`, which must return a table: the table | nil, message. `what`
-- words the messages, each caller keeping its own:
--   a string (e.g. "fusion file"): "<what> <file> failed to load: <error>" and
--     "<what> <file> must return a table (got <type>)";
--   a table { load = fmt(file, error) or nil (Lua's own error as it is),
--     type = fmt(file, type) }.
-- chunkname: load it under this name (Lua shortens long chunk names to "...tail"); without
-- it, "@file" as loadfile would. The file is read with M.read (regular files, bounded size).
function M.load_table(file, what, chunkname)
  local load_fmt, type_fmt
  if type(what) == "table" then
    load_fmt, type_fmt = what.load, what.type
  else
    load_fmt, type_fmt = what .. " %s failed to load: %s", what .. " %s must return a table (got %s)"
  end
  local function failed(err)
    if load_fmt == nil then return nil, err end
    return nil, load_fmt:format(file, tostring(err))
  end
  local src, rerr = M.read(file)
  if not src then return failed(rerr) end
  local chunk, err = loadstring(src, chunkname or ("@" .. file))
  if not chunk then return failed(err) end
  -- An operator's script (outside rerankd's own lua/ and providers/) runs in LuaJIT's
  -- interpreter: the daemon's deadline hook (core/luahost.c) sees every instruction there,
  -- while a compiled loop would never reach it.
  if jit_off and not M.is_builtin(file) then jit_off(chunk, true) end
  local ok, t = pcall(chunk)
  if not ok then return failed(t) end
  if type(t) ~= "table" then return nil, type_fmt:format(file, type(t)) end
  return t
end

-- true for a file under rerankd's own lua/ or providers/ directory
function M.is_builtin(file)
  local ok, root = pcall(M.root)
  if not ok or type(root) ~= "string" then return false end
  local f = M.normalize(M.abs(file))
  root = M.normalize(root)
  return f:sub(1, #root + 5) == root .. "/lua/" or f:sub(1, #root + 11) == root .. "/providers/"
end

function M.lua_names(dirs)
  local ok, core = pcall(require, "rerank.core")
  local names, seen = {}, {}
  for _, dir in ipairs(dirs or {}) do
    local list = ok and core.listdir and core.listdir(dir) or {}
    for _, f in ipairs(list) do
      local n = f:match("^(.+)%.lua$")
      if n and not seen[n] then
        seen[n] = true
        names[#names + 1] = n
      end
    end
  end
  table.sort(names)
  return names
end

local cwd_cache
function M.cwd()
  if cwd_cache then return cwd_cache end
  -- getcwd(3) from the C core: $PWD can be stale or absent
  local ok, core = pcall(require, "rerank.core")
  local dir = ok and core.cwd and core.cwd()
  if not M.is_abs(dir) then dir = os.getenv("PWD") end
  cwd_cache = M.is_abs(dir) and M.normalize(dir) or "/"
  return cwd_cache
end

function M.abs(p, base)
  if M.is_abs(p) then return M.normalize(p) end
  base = base or M.cwd()
  if not M.is_abs(base) then base = M.join(M.cwd(), base) end
  return M.normalize(M.join(base, p))
end

function M.root()
  local env = os.getenv("RERANKD_HOME")
  if env and env ~= "" then return M.abs(env) end
  local src = debug.getinfo(1, "S").source
  local file = src:sub(1, 1) == "@" and src:sub(2) or "lua/rerank/config/paths.lua"
  local dir = M.dirname(M.dirname(M.abs(file))) -- .../rerank (this file is rerank/config/paths.lua)
  -- an installed copy (make install-lib, luarocks) records where its data went
  local site = loadfile(dir .. "/site.lua")
  if site then
    local ok, t = pcall(site)
    if ok and type(t) == "table" and M.is_abs(t.root) then return t.root end
  end
  local prefix = dir:match("^(.*)/share/lua/5%.1/rerank$")
  if prefix then return prefix .. "/share/rerankd" end
  return M.normalize(dir .. "/../..")
end

return M
