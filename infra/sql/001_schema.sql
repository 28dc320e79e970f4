-- The legacy assessment records the resolver reads (SQL Server 2016+).
-- Idempotent: safe to run against a database that already has it.

IF OBJECT_ID(N'dbo.assessments', N'U') IS NULL
BEGIN
    CREATE TABLE dbo.assessments (
        assessment_id    BIGINT        NOT NULL CONSTRAINT pk_assessments PRIMARY KEY,
        student_id       NVARCHAR(64)  NOT NULL,
        assessment_type  NVARCHAR(32)  NOT NULL,
        administered_at  DATETIME2(3)  NOT NULL, -- UTC
        raw_score        FLOAT         NOT NULL,
        items_attempted  INT           NOT NULL,
        items_correct    INT           NOT NULL,
        duration_seconds INT           NOT NULL,
        CONSTRAINT ck_assessments_items CHECK (items_attempted >= 1 AND items_correct BETWEEN 0 AND items_attempted),
        CONSTRAINT ck_assessments_duration CHECK (duration_seconds >= 1)
    );
END;

-- The page query seeks on student_id and walks administered_at, assessment_id
-- descending (its ORDER BY and keyset cursor); the included columns make it a
-- covering index, so a page is one seek and a range scan of at most TOP rows.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_assessments_student_recent'
               AND object_id = OBJECT_ID(N'dbo.assessments'))
BEGIN
    CREATE INDEX ix_assessments_student_recent
        ON dbo.assessments (student_id, administered_at DESC, assessment_id DESC)
        INCLUDE (assessment_type, raw_score, items_attempted, items_correct, duration_seconds);
END;
