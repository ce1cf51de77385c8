#!/usr/bin/env bash
# The cost of the limits: the same authenticated route (GET /user/balance)
# with every policy evaluated (limits high enough to admit everything, plus
# a route limit) and with limits switched off. Same binary, a fresh store
# each time; the two alternate (on, off, on, off) so that drift on a shared
# machine does not favour either, and each row is the median of all runs.
#
#   tools/bench/limits.sh           # 2 rounds x 3 runs x 5 s per row
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

on='[limits]
enabled = true
per_minute = 1000000000
requests_per_day = 1000000000000
[limits.plans]
enterprise = 1000000000
[[limits.routes]]
method = "GET"
path = "/user/balance"
limit = 1000000000'
off='[limits]
enabled = false'

for round in 1 2; do
  start_tollgate "on$round" "$on"
  measure limits-on /user/balance -H "Authorization: Bearer $TG_KEY"
  stop_tollgate
  start_tollgate "off$round" "$off"
  measure limits-off /user/balance -H "Authorization: Bearer $TG_KEY"
  stop_tollgate
done

table limits-on limits-off
