SELECT i.item, a.assessment_id, a.student_id, a.assessment_type, a.administered_at,
    a.raw_score, a.items_attempted, a.items_correct, a.duration_seconds
FROM OPENJSON(@P1) WITH (
    item INT '$.i',
    top_rows INT '$.n',
    student_id NVARCHAR(64) '$.s',
    assessment_type NVARCHAR(32) '$.t',
    from_day DATE '$.f',
    to_day DATE '$.l',
    after_at DATETIME2(3) '$.a',
    after_id BIGINT '$.b'
) AS i
CROSS APPLY (
    SELECT TOP (i.top_rows)
        assessment_id, student_id, assessment_type, administered_at,
        raw_score, items_attempted, items_correct, duration_seconds
    FROM dbo.assessments
    WHERE student_id = i.student_id
      AND (i.assessment_type IS NULL OR assessment_type = i.assessment_type)
      AND (i.from_day IS NULL OR administered_at >= i.from_day)
      AND (i.to_day IS NULL OR administered_at < DATEADD(day, 1, i.to_day))
      AND (i.after_at IS NULL OR administered_at < i.after_at
           OR (administered_at = i.after_at AND assessment_id < i.after_id))
    ORDER BY administered_at DESC, assessment_id DESC
) AS a
ORDER BY i.item, a.administered_at DESC, a.assessment_id DESC
OPTION (RECOMPILE);
