-- Process figures from /proc for leak checks (Linux): open descriptors and resident memory.
--   proc.fd_count(pid) -> n | nil      entries in /proc/<pid>/fd
--   proc.rss_kb(pid)   -> kB | nil     VmRSS from /proc/<pid>/status
--   proc.sample(pid)   -> { fds = n, rss_kb = kB }
local M = {}

function M.fd_count(pid)
  local p = io.popen("ls /proc/" .. tonumber(pid) .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("*a"))
  p:close()
  if n == 0 then return nil end -- no such process
  return n
end

function M.rss_kb(pid)
  local f = io.open("/proc/" .. tonumber(pid) .. "/status", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

function M.sample(pid)
  return { fds = M.fd_count(pid), rss_kb = M.rss_kb(pid) }
end

return M
