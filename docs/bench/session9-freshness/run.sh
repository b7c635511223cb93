#!/bin/bash
cd /work/main
O=/tmp/ab17
N=/tmp/tg-new; F=/tmp/tg-fresh5
benches/ab_pairs.sh board-burst 3 $N:0 $F:50 > $O/bb1.txt 2>&1
benches/ab_pairs.sh board-burst 2 $F:50 $N:0 > $O/bb2.txt 2>&1
benches/ab_pairs.sh hot 3 $N:0 $F:50 > $O/hot1.txt 2>&1
benches/ab_pairs.sh hot 2 $F:50 $N:0 > $O/hot2.txt 2>&1
benches/ab_pairs.sh board-smooth 2 $N:0 $F:50 > $O/bs1.txt 2>&1
benches/ab_pairs.sh board-smooth 1 $F:50 $N:0 > $O/bs2.txt 2>&1
benches/ab_pairs.sh hot 2 $N:0 $F:20 > $O/hot-lag20.txt 2>&1
EXTRA="--duration 60" benches/ab_pairs.sh slow-reader 1 $N:0 $F:50 $F:20 > $O/sr1.txt 2>&1
EXTRA="--duration 60" benches/ab_pairs.sh slow-reader 1 $F:20 $F:50 $N:0 > $O/sr2.txt 2>&1
EXTRA="--duration 60 --slow-ack 1" benches/ab_pairs.sh slow-reader 1 $N:0 $F:50 > $O/sr-ack1.txt 2>&1
EXTRA="--duration 60 --slow-ack 4" benches/ab_pairs.sh slow-reader 1 $F:50 > $O/sr-ack4.txt 2>&1
cd /tmp/slow
for r in "$N 0" "$F 50" "$F 20" "$F 50 --ack 1"; do
  echo "== python slow reader: $r"; ./run.sh $r --secs 60 --warmup 5 2>&1 | tail -1
done > $O/python.txt
echo done > $O/DONE
