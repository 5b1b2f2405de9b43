use warabifs::pmem::{Pool, TxAlloc};

#[test]
fn smoke() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = dir.path().join("p.pmem");
    let pool = Pool::create(&path, 16 << 20).unwrap();
    let a = pool.alloc(1000, 0).unwrap();
    println!("a={a} usable={}", pool.usable_size(a));
    let root = pool.root_with_size(64).unwrap();
    println!("root={root:?}");
    let objs: Vec<_> = pool.objects().collect();
    println!("objs={objs:?}");
    let mut tx = pool.tx().unwrap();
    let b = tx.alloc(100, 7, TxAlloc::Zeroed).unwrap();
    tx.write(root, 0, b"hello").unwrap();
    tx.commit().unwrap();
    println!(
        "types {:?}",
        pool.objects().map(|o| pool.type_num(o)).collect::<Vec<_>>()
    );
    let mut tx = pool.tx().unwrap();
    tx.free(b).unwrap();
    let r = tx.alloc(1 << 40, 0, TxAlloc::Unflushed);
    println!("huge {r:?}");
    drop(tx);
    println!("after abort {:?}", pool.objects().collect::<Vec<_>>());
    let r = pool.alloc(100 << 20, 0);
    println!("enospc {r:?}");
    drop(pool);
    println!("check {:?}", Pool::check(&path));
    let p2 = Pool::open(&path).unwrap();
    println!(
        "reopen root {:?} {:?}",
        p2.root(),
        std::str::from_utf8(p2.bytes(p2.root().unwrap(), 0, 5))
    );
    println!("second open {:?}", Pool::open(&path).err());
}
