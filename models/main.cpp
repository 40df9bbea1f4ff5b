// The copse command-line tool (train, eval).
int main() { return 0; }
