-- bench/bookstore/wrk.lua: wrk's load on the bookstore app (bench/bookstore/app.py), a mix of
-- its two endpoints with random ids and offsets within the seeded database:
--   GET /author/<id>                     id drawn from 1..authors
--   GET /author?limit=L&offset=N         N drawn from 0..max_offset
-- Each wrk thread draws from its own generator, seeded by its number, so a run with the same
-- settings asks the same requests in the same order on each connection's thread.
--
--   wrk -t2 -c64 -d10s -s bench/bookstore/wrk.lua http://127.0.0.1:PORT [-- KEY=VALUE ...]
--
-- Settings, each a KEY=VALUE argument after `--`, else the environment variable, else the
-- default:
--   authors=N      BOOKSTORE_AUTHORS     the seeded authors (setup.sh's size)      100000
--   list=P         BOOKSTORE_LIST_SHARE  percent of requests that ask for a page   20
--   limit=L        BOOKSTORE_LIMIT       authors a page                            20
--   max_offset=N   BOOKSTORE_MAX_OFFSET  the largest offset asked                  authors - limit
-- The deeper the offset, the more rows PostgreSQL walks past (the post's "offset 500,000" was
-- its database-bound case): max_offset sets how much of the load is the database's.
--
-- At the end it prints bench/lib/report.lua's BENCH_RESULT line (requests, p50, p99, errors).
-- Concatenated with report.lua (as bench/wsgi.sh does), it works just the same.

local settings = {}

local function setting(key, env, default)
   local value = settings[key] or os.getenv(env)
   if value == nil or value == "" then
      return default
   end
   local number = tonumber(value)
   if number == nil or number < 0 or number ~= math.floor(number) then
      error(string.format("wrk.lua: %s must be a whole number >= 0, got '%s'", key, value))
   end
   return number
end

local authors, list_share, limit, max_offset

local function configure(args)
   for _, arg in ipairs(args or {}) do
      local key, value = arg:match("^([%w_]+)=(.*)$")
      if key == nil then
         error("wrk.lua: arguments are KEY=VALUE, got '" .. arg .. "'")
      end
      settings[key] = value
   end
   authors = setting("authors", "BOOKSTORE_AUTHORS", 100000)
   list_share = setting("list", "BOOKSTORE_LIST_SHARE", 20)
   limit = setting("limit", "BOOKSTORE_LIMIT", 20)
   max_offset = setting("max_offset", "BOOKSTORE_MAX_OFFSET", math.max(authors - limit, 0))
   if authors < 1 or list_share > 100 or limit < 1 or limit > 100 then
      error("wrk.lua: need authors >= 1, list <= 100 and limit within 1..100 (the app's range)")
   end
end

-- setup runs in the main Lua state, once for each thread before it starts: it numbers them.
local threads = 0
setup = function(thread)
   threads = threads + 1
   thread:set("thread_number", threads)
end

init = function(args)
   configure(args)
   math.randomseed(16 + (thread_number or 0))
end

request = function()
   local path
   if math.random(100) <= list_share then
      path = string.format("/author?limit=%d&offset=%d", limit, math.random(0, max_offset))
   else
      path = "/author/" .. math.random(1, authors)
   end
   return wrk.format("GET", path)
end

-- done(), from the report hook the other bench scripts use, bench/lib/report.lua, when it is
-- beside this file's folder; a copy of this script elsewhere (bench/wsgi.sh appends report.lua
-- to one) leaves done() to what follows it.
local report = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../lib/report.lua"
local found = io.open(report)
if found then
   found:close()
   dofile(report)
end
