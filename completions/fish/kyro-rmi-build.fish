# fish completion for kyro-rmi-build(1)
# The tool takes no operands, so file names are turned off.
complete -c kyro-rmi-build -f
complete -c kyro-rmi-build -s h -l help -d 'Print the usage and exit'
complete -c kyro-rmi-build -l version -d 'Print the version and exit'
complete -c kyro-rmi-build -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-rmi-build -s v -d 'Print leaves, windows, size and build time'
complete -c kyro-rmi-build -l leaves -x -d 'Number of leaf models'
complete -c kyro-rmi-build -l router-bits -x -a '(seq 8 24)' -d 'Router table of 2^B entries'
complete -c kyro-rmi-build -l max-size -x -d 'Largest index size in bytes'
complete -c kyro-rmi-build -l retain -x -d 'Keep folded WAL segments within SIZE and/or DURATION'
complete -c kyro-rmi-build -l vectors -d 'Build the vector index (HNSW graph) instead'
complete -c kyro-rmi-build -l m -x -d 'With --vectors: links per node of the graph'
complete -c kyro-rmi-build -l ef-construction -x -d "With --vectors: the build's beam"
complete -c kyro-rmi-build -l metric -x -d 'With --vectors: the distance the graph is built for' -a '(printf "%s\t%s\n" l2 "squared Euclidean distance" ip "1 - dot product" cosine "1 - cosine")'
