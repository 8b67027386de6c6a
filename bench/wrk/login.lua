-- A credential-stuffing flood: POST /api/login with a wrong password for a random username,
-- from a random client address (X-Forwarded-For; the server must trust 127.0.0.1 as a proxy).
-- Random names and addresses keep the per-account and per-IP throttles from ever engaging, so
-- every attempt costs a full Argon2id verification: the worst case for the server.
--
--   wrk ... -s login.lua http://127.0.0.1:PORT/api/login -- http://127.0.0.1:PORT

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(dir .. "report.lua")

local origin
local threads = {}
statuses = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  origin = args[1]
  report.seed()
end

function request()
  local body = string.format('{"username":"flood-%08d","password":"wrong password %08d"}',
    math.random(0, 99999999), math.random(0, 99999999))
  return wrk.format("POST", nil, {
    ["Origin"] = origin,
    ["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = string.format("198.51.%d.%d", math.random(0, 255), math.random(1, 254)),
  }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses") or {}) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = string.format('"%d":%d', status, n) end
  report.done(summary, latency, ',"statuses":{' .. table.concat(parts, ",") .. "}")
end
