# The benchmark workloads for Cap'n Proto.
@0xb5a1c7e2d4f60a31;
struct Entry { key @0 :Int32; values @1 :List(Text); }
struct Map { entries @0 :List(Entry); }
struct Ints { v @0 :List(Int32); }
