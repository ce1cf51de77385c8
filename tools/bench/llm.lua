-- wrk script: POST a small chat completion (JSON, no stream) with the key
-- from the environment (TG_BENCH_KEY), then the summary line.
wrk.method = "POST"
wrk.body = '{"model":"m1","max_tokens":16,"messages":[{"role":"user","content":"hello there"}]}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("TG_BENCH_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
dofile("tools/bench/summary.lua")
