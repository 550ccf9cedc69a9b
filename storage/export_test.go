package storage

// ListUserPATsSQL lets the tests explain the statement that lists one
// user's personal access tokens.
const ListUserPATsSQL = listUserPATsSQL
