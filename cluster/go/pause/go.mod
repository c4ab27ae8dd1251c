module sluice.dev/cluster/pause

go 1.26
