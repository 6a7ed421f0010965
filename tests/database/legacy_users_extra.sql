-- Run after tests/fixtures/legacy_supabase.sql (which stays verbatim): the users a real
-- Supabase database also has, which step stage-legacy-users must skip or handle.
-- OAuth-only sign-ins: no hash (GoTrue leaves NULL, or '' in older versions).
INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at, raw_user_meta_data) VALUES ('a1000000-0000-4000-8000-000000000001', 'oauth.only@example.com', NULL, now(), '{"full_name": "OAuth Only"}');
INSERT INTO public.profiles (id, email, role, language) VALUES ('a1000000-0000-4000-8000-000000000001', 'oauth.only@example.com', 'user', 'en');
INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at) VALUES ('a1000000-0000-4000-8000-000000000002', 'oauth.empty@example.com', '', now());
-- Signed up, never confirmed the address.
INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at) VALUES ('a1000000-0000-4000-8000-000000000003', 'never.confirmed@example.com', '$2a$10$FWUK2euidU4xuNnM7CukDe3wO7mZ05e9Hol2jcSAmWanUpZoSsWPC', NULL);
-- A phone-only user: no address at all.
INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at) VALUES ('a1000000-0000-4000-8000-000000000004', NULL, '$2a$10$FWUK2euidU4xuNnM7CukDe3wO7mZ05e9Hol2jcSAmWanUpZoSsWPC', NULL);
-- Imported from Firebase: a hash no verifier of the migration checks.
INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at) VALUES ('a1000000-0000-4000-8000-000000000005', 'from.firebase@example.com', '$fbscrypt$v=1,n=14,r=8,p=1,ss=Bw==,sk=ZZ==$c2FsdA==$aGFzaA==', now());
-- Imported with argon2id (GoTrue verifies these): staged. Mixed-case address, no profile row.
INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at, raw_user_meta_data) VALUES ('a1000000-0000-4000-8000-000000000006', 'Argon.User@Example.COM', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$8Vbo2Mv0nwtqVmhJHpb2NR1mY0b4ZZYCb8CQKdU3WZg', now(), '{"full_name": "Argon User"}');
