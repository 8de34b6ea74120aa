-- Argo CD health check for llmfleet.dev/LLMService (argocd-cm key
-- resource.customizations.health.llmfleet.dev_LLMService; see argocd-cm-health.yaml).
-- Argo CD runs it with the object as the global `obj` and reads the returned
-- {status, message}. Lua 5.1 (gopher-lua), base/table/string libraries only.
--
--   status      when (first match wins)
--   Progressing no status yet, or status.observedGeneration < metadata.generation:
--               the status describes an older spec than the one in Git
--   Degraded    phase Failed, or condition Degraded=True (its message)
--   Healthy     condition Ready=True, observed at the current generation
--   Progressing otherwise (the Progressing condition's message, else Ready's)

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local hs = {}
local status = obj.status
local generation = obj.metadata.generation

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
local ready = condition(status, "Ready")
if status.phase == "Failed" then
  hs.status = "Degraded"
  if degraded ~= nil and degraded.status == "True" then
    hs.message = describe(degraded, "Failed")
  else
    hs.message = describe(ready, "Failed")
  end
  return hs
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

-- A condition written for an older generation says nothing about this spec.
local readyCurrent = ready ~= nil and ready.status == "True" and
  (ready.observedGeneration == nil or generation == nil or ready.observedGeneration >= generation)
if readyCurrent then
  hs.status = "Healthy"
  local want = status.desiredReplicas or status.replicas
  if status.readyReplicas ~= nil and want ~= nil then
    hs.message = tostring(status.readyReplicas) .. "/" .. tostring(want) .. " replicas ready"
  else
    hs.message = describe(ready, "Ready")
  end
  return hs
end

hs.status = "Progressing"
local progressing = condition(status, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.message = describe(progressing, "Progressing")
elseif ready ~= nil and ready.status ~= "True" then
  hs.message = describe(ready, "Waiting for the service to become Ready")
else
  hs.message = "Waiting for the service to become Ready"
end
return hs
