-- orch.deps: dependency scheduling (depends_on: conditions on every
-- instance of other apps). A process whose dependencies do not hold yet is
-- held back (blocked) and started once they do; stops go
-- dependents first. It sees only the process table: opts.sup (list, start,
-- block, stop), opts.procs_of(name), opts.running(p) and opts.log.
local M = {}
local Deps = {}
Deps.__index = Deps

function M.new(opts)
  return setmetatable({ sup = opts.sup, procs_of = opts.procs_of, running = opts.running, log = opts.log }, Deps)
end

local CONDITION = {
  started = function(p) return p.status == "launching" or p.status == "online" end,
  online = function(p) return p.status == "online" end,
  -- the health module sets p.healthy; an app without a check is healthy once online
  healthy = function(p) return p.status == "online" and (p.app.health == nil or p.healthy == true) end,
  completed = function(p) return p.status == "stopped" and p.last_exit ~= nil and p.last_exit.code == 0 end,
}

-- nil when every dependency of app holds, else "NAME (condition)".
function Deps:unmet(app)
  local names = {}
  for name in pairs(app.depends_on or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local cond = app.depends_on[name]
    local procs = self.procs_of(name)
    local ok = #procs > 0
    for _, p in ipairs(procs) do
      if not CONDITION[cond](p) then ok = false break end
    end
    if not ok then return name .. " (" .. cond .. ")" end
  end
  return nil
end

-- Starts the held-back processes whose dependencies now hold.
function Deps:unblock()
  for _, p in ipairs(self.sup:list()) do
    if p.status == "blocked" and not self:unmet(p.app) then self.sup:start(p) end
  end
end

-- Stops processes dependents first: each round stops the apps no other app
-- still to be stopped depends on, and waits for them. done() at the end.
function Deps:stop_ordered(procs, done)
  local left = {}
  for _, p in ipairs(procs) do left[#left + 1] = p end
  local function round()
    if #left == 0 then return done and done() end
    local needed = {}
    for _, p in ipairs(left) do
      for dep in pairs(p.app.depends_on or {}) do needed[dep] = true end
    end
    local now, later = {}, {}
    for _, p in ipairs(left) do
      if needed[p.name] then later[#later + 1] = p else now[#now + 1] = p end
    end
    if #now == 0 then now, later = later, {} end -- cannot happen (no cycles); never hang
    left = later
    local pending = #now
    for _, p in ipairs(now) do
      self.sup:stop(p, function()
        pending = pending - 1
        if pending == 0 then round() end
      end)
    end
  end
  round()
end

-- Starts each process that does not run, or holds it back while one of
-- its dependencies does not hold.
function Deps:start(procs)
  for _, p in ipairs(procs) do
    if not self.running(p) then
      local missing = self:unmet(p.app)
      if missing then
        -- held back until its dependencies are there (see unblock)
        self.sup:block(p, "waiting for " .. missing)
        self.log("info", string.format("%s:%d waits for %s", p.name, p.instance, missing))
      else
        self.sup:start(p)
      end
    end
  end
end

return M
