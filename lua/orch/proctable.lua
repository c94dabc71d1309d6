-- orch.proctable: the supervisor's process table and its indexes. list:
-- every process in id order (a replacement takes the id of the one it
-- replaces, so the order holds); by_id; the processes of each app key
-- (orch.targets.key: the app's name, or NAME#N for a second app of a name),
-- in id order too; the keys each app name was registered under. A start of
-- N apps asked "the processes of this app" N times: a walk of the whole
-- table each time made it quadratic.
local targets = require("orch.targets")

local T = {}
T.__index = T

local M = {}

function M.new()
  return setmetatable({ list = {}, by_id = {}, of_key = {}, keys_of = {} }, T)
end

-- Where p is in list (sorted by id), or nil: a binary search, then p itself
-- among those of its id (a replacement briefly shares one).
local function find(list, p)
  local lo, hi = 1, #list
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if list[mid].id < p.id then lo = mid + 1 else hi = mid end
  end
  for i = lo, #list do
    if list[i] == p then return i end
    if list[i].id ~= p.id then break end
  end
  -- ids changed from outside, before a reindex (orch update): a walk
  for i, q in ipairs(list) do
    if q == p then return i end
  end
end

-- Puts p into list in id order (after the others of its id).
local function insert(list, p)
  local at = #list + 1
  while at > 1 and list[at - 1].id > p.id do at = at - 1 end
  table.insert(list, at, p)
end

local function unlist(list, p)
  local i = list and find(list, p)
  if i then table.remove(list, i) end
  return i
end

function T:_file(p)
  local key = targets.key(p)
  local bucket = self.of_key[key]
  if not bucket then
    bucket = {}
    self.of_key[key] = bucket
  end
  insert(bucket, p)
end

function T:_unfile(p)
  local key = targets.key(p)
  local bucket = self.of_key[key]
  unlist(bucket, p)
  if bucket and #bucket == 0 then self.of_key[key] = nil end
end

-- A new process, with an id above every other.
function T:add(p)
  self.list[#self.list + 1] = p
  self.by_id[p.id] = p
  self:_file(p)
end

function T:remove(p)
  if not unlist(self.list, p) then return end
  if self.by_id[p.id] == p then self.by_id[p.id] = nil end
  self:_unfile(p)
end

-- new (in the table already) takes id and its place in the order: the
-- process it replaces (with that id) has left the table.
function T:take_place(new, id)
  self:remove(new)
  new.id = id
  insert(self.list, new)
  self.by_id[id] = new
  self:_file(new)
end

-- change() alters what p's key derives from (its name and app: a rename).
function T:rekey(p, change)
  self:_unfile(p)
  change()
  self:_file(p)
end

-- The ids were changed from outside (orch update gives the processes taken
-- over their old ids): the order and the indexes again, in the same tables.
function T:reindex()
  table.sort(self.list, function(a, b) return a.id < b.id end)
  for id in pairs(self.by_id) do self.by_id[id] = nil end
  self.of_key = {}
  for _, p in ipairs(self.list) do
    self.by_id[p.id] = p
    self:_file(p)
  end
end

-- The processes of the app of that key, in id order: a new list.
function T:of(key)
  local out = {}
  for i, p in ipairs(self.of_key[key] or {}) do out[i] = p end
  return out
end

-- An app registered under key: keys(name, apps) finds it by its name.
function T:note_app(name, key)
  local set = self.keys_of[name]
  if not set then
    set = {}
    self.keys_of[name] = set
  end
  set[key] = true
end

-- The keys of apps[] whose app is named name: name itself first, then
-- those of a second app of the name (start -f: NAME#2...), sorted. Keys
-- noted whose app is gone or renamed are forgotten here.
function T:keys(name, apps)
  local set, keys = self.keys_of[name] or {}, {}
  for key in pairs(set) do
    local entry = apps[key]
    if not entry or entry.app.name ~= name then
      set[key] = nil
    elseif key ~= name then
      keys[#keys + 1] = key
    end
  end
  if not next(set) then self.keys_of[name] = nil end
  table.sort(keys)
  if apps[name] then table.insert(keys, 1, name) end
  return keys
end

return M
