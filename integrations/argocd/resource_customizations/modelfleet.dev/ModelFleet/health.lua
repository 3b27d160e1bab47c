-- Argo CD health check for modelfleet.dev/ModelFleet.
-- Healthy only when the operator has acted on the current spec, the phase is Ready and every model is
-- Ready or ScaledToZero (asleep, wakes on its next request). Progressing while the fleet is Pending,
-- Deploying or Upgrading. Degraded for Degraded, Failed and Invalid, with the operator's message.
-- Uses only Lua's base library: it runs in argocd-cm without useOpenLibs.
local hs = {status = "Progressing", message = "Waiting for the ModelFleet operator to report status"}
local status = obj.status
if status == nil or status.phase == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "Waiting for the ModelFleet operator to act on generation " .. generation
  return hs
end

local function said(text)
  if text ~= nil and text ~= "" then
    return ": " .. text
  end
  return ""
end

local phase = status.phase
if phase == "Degraded" or phase == "Failed" or phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = phase .. said(status.message)
  return hs
end
if phase == "Pending" or phase == "Deploying" or phase == "Upgrading" then
  hs.message = phase .. said(status.message)
  return hs
end
if phase ~= "Ready" then
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. phase
  return hs
end

-- Ready: every model must be able to answer (now, or after a wake).
if status.models ~= nil then
  for _, model in ipairs(status.models) do
    local state = model.state
    if state ~= "Ready" and state ~= "ScaledToZero" then
      if state == "Failed" or state == "Unhealthy" then
        hs.status = "Degraded"
      end
      hs.message = "Model " .. model.name .. " is " .. tostring(state) .. said(model.message)
      return hs
    end
  end
end
hs.status = "Healthy"
if status.ready ~= nil and status.ready ~= "" then
  hs.message = status.ready .. " models ready"
else
  hs.message = "Ready"
end
return hs
