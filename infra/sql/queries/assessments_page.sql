SELECT TOP (@P1)
    assessment_id, student_id, assessment_type, administered_at,
    raw_score, items_attempted, items_correct, duration_seconds
FROM dbo.assessments
WHERE student_id = @P2
  AND (@P3 IS NULL OR assessment_type = @P3)
  AND (@P4 IS NULL OR administered_at >= @P4)
  AND (@P5 IS NULL OR administered_at < DATEADD(day, 1, @P5))
  AND (@P6 IS NULL OR administered_at < @P6 OR (administered_at = @P6 AND assessment_id < @P7))
ORDER BY administered_at DESC, assessment_id DESC
OPTION (RECOMPILE);
