DROP INDEX oauth_clients_source_idx;
DROP INDEX audit_events_event_idx;
DROP INDEX audit_events_client_id_idx;
DROP INDEX audit_events_subject_idx;
DROP INDEX audit_events_actor_idx;
DROP TABLE personal_access_tokens;
