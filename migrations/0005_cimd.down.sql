DROP TABLE cimd_failures;
DROP TABLE cimd_documents;
