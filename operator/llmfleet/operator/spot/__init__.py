"""Spot capacity: interruption signals, the on-demand/spot split and the drain plan (pure functions).

| module       | question it answers                                                           |
| ------------ | ----------------------------------------------------------------------------- |
| signals      | which nodes are about to go, by when (from nodes, pods and Events)            |
| event_trust  | which Events about Nodes count as evidence (no tenant can have written them)  |
| notice       | the notice and time types the scan, the drains and the SpotPool status share  |
| pool_notices | is a cloud's notice too short to drain; status.interruptedNodes               |
| split        | how many replicas on on-demand and on spot; when to fall back and come back   |
| fleet_pods   | which pods still serve; the replica a drain keeps for its replacement         |
| drain        | what to do next for one pod on a reclaimed node (drain_state: its plain data) |

(The node agent, EC2 metadata notices → a Node annotation, is I/O: `adapters/node_agent.py`.)

A handler reads nodes, pods and events, calls these (imported from the module that defines
them), applies the actions and writes the state they return into annotations and status
(docs/spot.md, "What survives a restart").
"""
