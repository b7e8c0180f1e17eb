package trainer

// maxConfigBytes bounds a config file read into memory.
const maxConfigBytes = 16 << 20
