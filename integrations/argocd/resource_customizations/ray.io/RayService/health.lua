-- Argo CD health check for ray.io/RayService (KubeRay 1.3 and newer), for fleets rendered offline
-- (`modelfleet render` -> RayService in Git, no operator). Argo CD ships no check for RayService, and
-- without one a RayService counts as Healthy as soon as it exists.
-- Healthy when KubeRay's Ready condition is True and every Serve application of the active cluster is
-- RUNNING; Progressing while it initializes or upgrades; Degraded when KubeRay refused or gave up on it, or
-- an application failed. Uses only Lua's base library: it runs in argocd-cm without useOpenLibs.
local hs = {status = "Progressing", message = "Waiting for KubeRay to report status"}
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "Waiting for KubeRay to act on generation " .. generation
  return hs
end

local ready, upgrading
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "UpgradeInProgress" and condition.status == "True" then
    upgrading = condition
  end
end
if ready == nil then
  return hs
end

local function described(condition)
  local text = condition.reason or ""
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

if ready.reason == "ValidationFailed" or ready.reason == "InitializingTimeout" then
  hs.status = "Degraded"
  hs.message = described(ready)
  return hs
end

-- An application that failed on the active cluster is Degraded even while the Ready condition holds.
local active = status.activeServiceStatus
if active ~= nil and active.applicationStatuses ~= nil then
  for name, app in pairs(active.applicationStatuses) do
    if app.status == "DEPLOY_FAILED" or app.status == "UNHEALTHY" then
      hs.status = "Degraded"
      hs.message = "Serve application " .. name .. " is " .. app.status
      if app.message ~= nil and app.message ~= "" then
        hs.message = hs.message .. ": " .. app.message
      end
      return hs
    end
  end
end

if ready.status ~= "True" then
  if ready.reason == "ZeroServeEndpoints" then
    hs.status = "Degraded"
  end
  hs.message = described(ready)
  return hs
end
if upgrading ~= nil then
  hs.message = "Upgrading: " .. described(upgrading)
  return hs
end
if active ~= nil and active.applicationStatuses ~= nil then
  for name, app in pairs(active.applicationStatuses) do
    if app.status ~= "RUNNING" then
      hs.message = "Serve application " .. name .. " is " .. tostring(app.status)
      return hs
    end
  end
end
hs.status = "Healthy"
hs.message = described(ready)
return hs
