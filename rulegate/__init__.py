"""rulegate: the rule model and its storage, shared by `ruleadmin` and `gateway_agent`.

Modules: `schema` (what a valid rule is), `evaluator` (the per-request decision), `keyspace`
(Redis key names), `store` + `commit_script` (CAS commits and consistent reads), `history`
(rollback plans), `fleet` (gateway heartbeats), `snapshot` (last-known-good file), `connection`
(Redis client settings), `errors`. Nothing here imports `ruleadmin` or `gateway_agent`.
"""
