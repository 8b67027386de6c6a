-- Presents a random credential from a file (one per line) on every request.
--
--   wrk ... -s credential.lua URL -- cookie <cookie-name> <file>   → Cookie: <name>=<value>
--   wrk ... -s credential.lua URL -- bearer - <file>               → Authorization: Bearer <value>
--   wrk ... -s credential.lua URL -- none                          → no credential
--
-- No response() callback: wrk then skips handing every response to Lua, so the load generator
-- costs the same for every endpoint.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(dir .. "report.lua")

local mode, name, values

function init(args)
  mode, name = args[1] or "none", args[2]
  if mode ~= "none" then values = report.read_lines(args[3]) end
  report.seed()
end

function request()
  if mode == "cookie" then
    return wrk.format(nil, nil, { ["Cookie"] = name .. "=" .. values[math.random(#values)] })
  elseif mode == "bearer" then
    return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. values[math.random(#values)] })
  end
  return wrk.format(nil, nil, {})
end

function done(summary, latency, requests)
  report.done(summary, latency)
end
