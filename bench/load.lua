-- wrk script: cycles through request variants written by bench/run.py and prints a JSON summary.
-- WRK_VARIANTS=dir: dir/N.path, dir/N.headers ("Name: value" lines), dir/N.body for N = 1..count.
local dir = os.getenv("WRK_VARIANTS")
local requests_ = {}
local i = 0

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local n = 1
while true do
  local f = io.open(dir .. "/" .. n .. ".body", "rb")
  if not f then break end
  f:close()
  local headers = {}
  for line in read(dir .. "/" .. n .. ".headers"):gmatch("[^\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k] = v end
  end
  local path = read(dir .. "/" .. n .. ".path"):gsub("%s+$", "")
  requests_[n] = wrk.format("POST", path, headers, read(dir .. "/" .. n .. ".body"))
  n = n + 1
end

request = function()
  i = i % #requests_ + 1
  return requests_[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
