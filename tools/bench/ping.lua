-- wrk script: GET /ping, with the summary line of summary.lua at the end.
-- Run from the repository root (tools/bench/ping.sh does).
dofile("tools/bench/summary.lua")
wrk.method = "GET"
wrk.path = "/ping"
