-- wrk script: the LLM call of llm.lua, N times (TG_BENCH_N), then stop and
-- create the file TG_BENCH_DONE (wrk itself runs on until its -d ends).
-- For one thread and one connection: a fixed amount of work to count.
dofile("tools/bench/llm.lua")
local n = tonumber(os.getenv("TG_BENCH_N") or "1000")
local done_file = os.getenv("TG_BENCH_DONE")
local seen = 0
function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. "\n")
  end
  seen = seen + 1
  if seen == n then
    wrk.thread:stop()
    if done_file then
      io.open(done_file, "w"):close()
    end
  end
end
